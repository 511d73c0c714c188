"""hgrnn.data.paths: per-video output names that stay inside their folder and never land on
an input; whole-or-nothing writes."""

import errno
import os

import pytest

from hgrnn.data.paths import OutputPathError, output_path, replacing, video_id_problem


@pytest.mark.parametrize("vid, words", [
    ("..", "names a folder"), (".", "names a folder"), ("", "is empty"),
    ("../src/clip2", "holds '/'"), ("/etc/passwd", "holds '/'"), ("a\0b", "NUL"),
    ("x" * 300, "longer than a file name"), (7, "not a string")])
def test_ids_that_cannot_name_a_file_in_the_folder_are_refused(tmp_path, vid, words):
    with pytest.raises(OutputPathError, match=words) as err:
        output_path(tmp_path, vid, ".mp4")
    assert repr(vid)[:20] in str(err.value) and "\n" not in str(err.value)
    assert video_id_problem(vid) is not None


def test_an_id_names_a_file_inside_the_folder(tmp_path):
    for vid in ("clip1", "-5KQ66BBWC4", "a b", "...x", "é"):
        path = output_path(tmp_path, vid, ".mp4")
        assert path.parent == tmp_path and path.name == vid + ".mp4"
    with pytest.raises(OutputPathError, match="longer than a file name"):
        output_path(tmp_path, "x" * 253, ".mp4")


def test_an_output_that_is_an_input_is_refused(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"input")
    with pytest.raises(OutputPathError, match="would overwrite the input"):
        output_path(tmp_path, "clip", ".mp4", inputs=[video])
    os.symlink(video, tmp_path / "link.mp4")             # another name of the same file
    with pytest.raises(OutputPathError, match="would overwrite the input"):
        output_path(tmp_path / ".", "link", ".mp4", inputs=[video])
    assert output_path(tmp_path / "out", "clip", ".mp4", inputs=[video]).parent.name == "out"


def test_replacing_writes_whole_or_nothing(tmp_path):
    target = tmp_path / "r.csv"
    with replacing(target) as partial:
        partial.write_text("done\n")
    assert target.read_text() == "done\n" and os.listdir(tmp_path) == ["r.csv"]
    with pytest.raises(OutputPathError, match=f"{target}: No space left on device"), \
            replacing(target) as partial:
        partial.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "done\n" and os.listdir(tmp_path) == ["r.csv"]
    with pytest.raises(KeyError), replacing(tmp_path / "k.csv") as partial:   # passed on
        partial.write_text("half")
        raise KeyError
    assert os.listdir(tmp_path) == ["r.csv"]
