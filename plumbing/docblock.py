"""Generated blocks in Markdown pages: the text between a BEGIN and an END marker line is replaced."""
import pathlib

from deepmodel.plumbing import InputError, write_text


def check_block(path, begin, end):
    """The text of the Markdown file ``path`` when it holds one ``begin`` marker line followed by
    one ``end`` line, else an InputError (so a page writer can refuse before any work)."""
    path = pathlib.Path(path)
    try:
        doc = path.read_text()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (cannot decode it as UTF-8)") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror})") from None
    if doc.count(begin) != 1 or doc.count(end) != 1 or doc.index(begin) > doc.index(end):
        raise InputError(f"{path}: needs one '{begin}' line followed by one '{end}' line")
    return doc


def replace_block(path, begin, end, text):
    """Put ``text`` between the lines ``begin`` and ``end`` of the Markdown file ``path``.

    The file must hold each marker once, ``begin`` first (an InputError otherwise). Returns True
    when the file changed (written atomically), False when it already held ``text``.
    """
    path = pathlib.Path(path)
    doc = check_block(path, begin, end)
    head, rest = doc.split(begin)
    _, tail = rest.split(end)
    new = head + begin + "\n\n" + text + "\n" + end + tail
    if new == doc:
        return False
    write_text(path, new)
    return True
