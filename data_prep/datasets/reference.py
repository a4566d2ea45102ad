"""The public reference data that travels with the repository, under ``data/reference/``.

Paths only; every tool and test takes its defaults from here, so they work from any working
directory and in a clone that has nothing beside it. ``data/reference/README.md`` says what each
file is and where it comes from. Text files are xz-compressed (``.txt.xz``); the project's readers
(:func:`plumbing.open_text`, ``numpy.loadtxt``) open them as they are.
"""
import pathlib

from deepmodel.plumbing import PROJECT

REFERENCE = PROJECT / "data" / "reference"

NYU = REFERENCE / "nyu"
NYU_LABELS = NYU / "nyu_test_groundtruth_label.txt.xz"   # (8252 lines, 14 joints x u v d)
NYU_LIST = NYU / "nyu_test_list.txt.xz"                  # frame file names, same order
NYU_PREDICTIONS = NYU / "predictions"                    # published methods, same format
NYU_RAW_FRAME = NYU / "depth_1_0000001.png"              # NYU test frame 1 as distributed
NYU_TEST_CROPS = NYU / "test_crops"                      # five 128x128 8-bit crops

ICVL = REFERENCE / "icvl"
ICVL_LABELS = ICVL / "icvl_test_groundtruth_label.txt.xz"  # (1596 lines, 16 joints x u v d)
ICVL_LIST = ICVL / "icvl_test_list.txt.xz"
ICVL_PREDICTIONS = ICVL / "predictions"

GOLDEN = REFERENCE / "golden" / "deepmodel_layer_golden.json"   # released C++ layer outputs
DEEPMODEL_CONFIG = REFERENCE / "deepmodel-config"                # released configuration files


def prediction_files(folder):
    """The prediction files of a reference folder, sorted by name."""
    return sorted(pathlib.Path(folder).glob("*.txt*"))
