"""plumbing: a file never replaces a folder, outputs follow the umask, output sets are all or
nothing, option types refuse NaN and infinities, open_text names undecodable files."""
import argparse
import os
import subprocess
import sys

import pytest

from deepmodel import plumbing
from deepmodel.plumbing import (InputError, OutputSet, finite_float, int_in, open_text,
                                replace_atomically)


def test_a_file_never_replaces_a_folder(tmp_path):
    folder = tmp_path / "out.png"
    (folder / "inner").mkdir(parents=True)
    (folder / "inner" / "keep").write_text("x")
    with pytest.raises(InputError, match="is a folder"):
        plumbing.write_text(folder, "data")
    assert (folder / "inner" / "keep").read_text() == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]        # no temporary file left
    tmp = tmp_path / "t"
    tmp.mkdir()
    (tmp_path / "f").write_text("file")
    with pytest.raises(InputError, match="is a file"):
        replace_atomically(tmp, tmp_path / "f")
    assert (tmp_path / "f").read_text() == "file"


def test_outputs_follow_the_umask(tmp_path):
    code = ("import os, numpy as np, plumbing; os.umask(0o002); "
            f"plumbing.write_npz({str(tmp_path / 'a.npz')!r}, x=np.zeros(2)); "
            f"plumbing.write_json({str(tmp_path / 'a.json')!r}, {{}})")
    subprocess.run([sys.executable, "-c", code], check=True)
    for name in ("a.npz", "a.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o664


def test_output_set_is_all_or_nothing(tmp_path):
    with OutputSet(tmp_path / "index.json") as outs:
        plumbing.write_text(outs.stage(tmp_path / "a.txt"), "old a")
        plumbing.write_json(outs.stage(tmp_path / "index.json"), {"v": "old"})
    with pytest.raises(OSError):
        with OutputSet(tmp_path / "index.json") as outs:
            plumbing.write_text(outs.stage(tmp_path / "a.txt"), "new a")
            raise OSError(28, "No space left on device")
    assert (tmp_path / "a.txt").read_text() == "old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "index.json"]


def test_json_is_strict(tmp_path):
    with pytest.raises(InputError, match="NaN or infinite"):
        plumbing.write_json(tmp_path / "x.json", {"mean": float("nan")})
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "abc", "-1"])
def test_option_types_refuse_non_finite_and_out_of_range(text):
    with pytest.raises(argparse.ArgumentTypeError):
        finite_float(0)(text)
    if text != "-1":
        with pytest.raises(argparse.ArgumentTypeError):
            int_in(0)(text)
    assert finite_float(0)("2.5") == 2.5 and int_in(1)("3") == 3


def test_open_text_names_undecodable_and_broken_files(tmp_path):
    (tmp_path / "b.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match="b.txt: not a text file"):
        open_text(tmp_path / "b.txt")
    (tmp_path / "c.txt.xz").write_bytes(b"plain")
    with pytest.raises(InputError, match="c.txt.xz: not a valid compressed file"):
        open_text(tmp_path / "c.txt.xz")


def test_os_errors_are_one_line(tmp_path):
    code = ("import plumbing\n"
            "def main(argv):\n"
            f"    open({str(tmp_path / 'nodir' / 'x')!r}, 'w')\n"
            "plumbing.run(main)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: ") and "No such file or directory" in proc.stderr
    assert os.path.exists(tmp_path)


@pytest.mark.parametrize("message, hint", [("mdb_txn_commit: Input/output error", True),
                                           ("mdb_get: MDB_CORRUPTED: Located page was wrong type",
                                            False)])
def test_lmdb_errors_are_one_line_and_a_failed_write_asks_about_the_disk(message, hint):
    code = ("import lmdb, plumbing\n"
            "def main(argv):\n"
            f"    raise lmdb.Error({message!r})\n"
            "plumbing.run(main)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: LMDB: {message}")
    assert ("disk full" in proc.stderr) == hint


def _square(x):
    return x * x


def test_worker_results_in_order_and_no_worker_left_after_an_early_stop():
    import multiprocessing
    from deepmodel.plumbing import worker_results

    with worker_results(_square, abs, (0,), range(50), workers=2) as it:
        assert list(it) == [x * x for x in range(50)]
    with worker_results(_square, abs, (0,), range(10 ** 6), workers=2) as it:
        assert next(it) == 0                                   # stop after one result
    assert not multiprocessing.active_children()
    with worker_results(_square, abs, (0,), range(5), workers=2, ordered=False) as it:
        assert sorted(it) == [0, 1, 4, 9, 16]
    with worker_results(_square, abs, (0,), range(5), workers=1) as it:   # here, no pool
        assert list(it) == [0, 1, 4, 9, 16]


def test_check_outputs_refuses_inputs_their_folders_and_the_repository(tmp_path):
    from deepmodel.plumbing import PROJECT, check_outputs

    data = tmp_path / "in.txt"
    data.write_text("x")
    lmdb = tmp_path / "lmdb"
    (lmdb / "nyu_test_depth").mkdir(parents=True)
    link = tmp_path / "link.txt"
    link.symlink_to(data)
    for outputs, needle in (([("--json", data)], "is the labels"),
                            ([("--json", link)], "is the labels"),                 # through a link
                            ([("--out", tmp_path / "x" / ".." / "in.txt")], "is the labels"),
                            ([("--out", lmdb / "nyu_test_depth" / "a.png")], "lies inside"),
                            ([("--out/", tmp_path)], "holds"),
                            ([("--out", PROJECT / "README.md")], "tracked by git"),
                            ([("--out", PROJECT / "data/reference/new.png")], "reference data"),
                            ([("--out/", PROJECT / "docs")], "holds files of the repository")):
        with pytest.raises(InputError, match=needle):
            check_outputs(outputs, [("the labels", data), ("--lmdb", lmdb), ("--none", None)])
    # allowed: a new file beside the inputs, a replaced folder that holds none, what a command
    # regenerates, no output at all
    check_outputs([("--out", tmp_path / "out.txt"), ("--out/", tmp_path / "new"), ("--x", None)],
                  [("the labels", data), ("--lmdb", lmdb)])
    check_outputs([("--out", PROJECT / "README.md")], generated=[PROJECT / "README.md"])


def test_stale_temporaries_of_ended_runs_are_removed_and_nothing_else(tmp_path):
    from deepmodel.plumbing import TMP_TAG, atomic_path

    ended = subprocess.Popen(["true"])
    ended.wait()
    dead, alive = ended.pid, os.getppid()
    stale = [f".out.json{TMP_TAG}{dead}.json", f"..out.json{TMP_TAG}{dead}.json{TMP_TAG}{dead}.json"]
    kept = [f".out.json{TMP_TAG}{alive}.json",                 # a run still going
            f".other.json{TMP_TAG}{dead}.json",                # another output's
            "out.json.tmp-x", "notes.txt"]
    for name in stale + kept:
        (tmp_path / name).write_text("old")
    (tmp_path / f".out.json{TMP_TAG}{dead}.dir").mkdir()
    stale.append(f".out.json{TMP_TAG}{dead}.dir")              # a folder too
    with atomic_path(tmp_path / "out.json") as tmp:
        tmp.write_text("{}")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(kept + ["out.json"]), left


def test_a_failed_write_names_its_file(tmp_path):
    from deepmodel.plumbing import atomic_path, describe_os_error

    for err in (OSError(28, "No space left on device"), OSError("2600 requested and 1008 written")):
        with pytest.raises(OSError) as caught:
            with atomic_path(tmp_path / "big.npz"):
                raise err
        assert describe_os_error(caught.value).startswith(f"{tmp_path / 'big.npz'}: ")


def test_an_output_set_scans_its_folder_for_leftovers_once(tmp_path, monkeypatch):
    """Staging many outputs of one folder scans it once, not once per file (each write of a
    staged file in turn must not rescan: thousands of files would cost minutes)."""
    from deepmodel.plumbing import OutputSet, write_text

    scans = []
    real = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path=".": scans.append(path) or real(path))
    with OutputSet(tmp_path / "index.json") as outs:
        for i in range(20):
            write_text(outs.stage(tmp_path / f"f{i}.txt"), "x")
        write_text(outs.stage(tmp_path / "index.json"), "{}")
    assert len(scans) == 1, scans
    assert len(list(tmp_path.iterdir())) == 21
