from pathlib import Path

import pytest

from serieslabeler.store.paths import OutsideRoot, confine, confine_any, relative_inside


@pytest.fixture
def root(tmp_path: Path) -> Path:
    inside = tmp_path / "root"
    (inside / "sub").mkdir(parents=True)
    (inside / "sub" / "file.txt").write_text("secret contents")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "target.txt").write_text("outside contents")
    return inside


def test_relative_path_inside_root_resolves_under_it(root):
    assert confine(root, "sub/file.txt") == (root / "sub" / "file.txt").resolve()


def test_root_itself_is_inside(root):
    assert confine(root, root) == root.resolve()
    assert confine(root, ".") == root.resolve()


def test_nonexistent_path_under_root_is_allowed_for_creation(root):
    assert confine(root, "new/deeper/file.npz") == root.resolve() / "new" / "deeper" / "file.npz"


def test_dotdot_escape_is_refused_and_named_as_typed(root):
    with pytest.raises(OutsideRoot) as refused:
        confine(root, "sub/../../outside/target.txt", what="workspace")
    message = str(refused.value)
    assert "workspace" in message and "sub/../../outside/target.txt" in message
    assert str(root.parent / "outside") not in message


def test_dotdot_that_stays_inside_is_allowed(root):
    assert confine(root, "sub/../sub/file.txt") == (root / "sub" / "file.txt").resolve()


def test_absolute_path_outside_is_refused(root):
    with pytest.raises(OutsideRoot):
        confine(root, "/etc/passwd")


def test_absolute_path_inside_is_allowed(root):
    assert confine(root, root / "sub") == (root / "sub").resolve()


def test_sibling_with_common_prefix_is_refused(root):
    (root.parent / "root-other").mkdir()
    with pytest.raises(OutsideRoot):
        confine(root, root.parent / "root-other")


def test_directory_symlink_pointing_outside_is_refused(root):
    (root / "link").symlink_to(root.parent / "outside", target_is_directory=True)
    with pytest.raises(OutsideRoot) as refused:
        confine(root, "link/target.txt", what="image")
    assert "link/target.txt" in str(refused.value)
    assert "target.txt" in str(refused.value) and "outside contents" not in str(refused.value)
    assert str(root.parent / "outside") not in str(refused.value)


def test_file_symlink_escaping_is_refused(root):
    (root / "innocent.txt").symlink_to(root.parent / "outside" / "target.txt")
    with pytest.raises(OutsideRoot):
        confine(root, "innocent.txt")


def test_symlink_staying_inside_is_allowed(root):
    (root / "alias").symlink_to(root / "sub", target_is_directory=True)
    assert confine(root, "alias/file.txt") == (root / "sub" / "file.txt").resolve()


def test_symlinked_root_is_resolved_too(root):
    link_to_root = root.parent / "root-link"
    link_to_root.symlink_to(root, target_is_directory=True)
    assert confine(link_to_root, "sub/file.txt") == (root / "sub" / "file.txt").resolve()


def test_symlink_loop_is_refused(root):
    (root / "loop").symlink_to(root / "loop")
    with pytest.raises(OutsideRoot):
        confine(root, "loop/x")


def test_nul_byte_is_refused(root):
    with pytest.raises(OutsideRoot, match="NUL"):
        confine(root, "sub/file.txt\x00.png")


@pytest.mark.parametrize("stored", ["/etc/passwd", "\\server\\share", "C:\\Windows", "C:relative", "//host/x"])
def test_relative_inside_refuses_absolute_forms(root, stored):
    with pytest.raises(OutsideRoot, match="absolute"):
        relative_inside(root, stored, "image path")


@pytest.mark.parametrize("stored", ["../outside/target.txt", "sub/../../x", "sub\\..\\..\\x", "sub/../file"])
def test_relative_inside_refuses_dotdot_even_when_it_would_stay_inside(root, stored):
    with pytest.raises(OutsideRoot, match=r"'\.\.'"):
        relative_inside(root, stored, "image path")


def test_relative_inside_refuses_nul_and_empty(root):
    with pytest.raises(OutsideRoot, match="NUL"):
        relative_inside(root, "sub/\x00", "image path")
    with pytest.raises(OutsideRoot, match="empty"):
        relative_inside(root, "", "image path")


def test_relative_inside_refuses_symlink_escape(root):
    (root / "thumbs").symlink_to(root.parent / "outside", target_is_directory=True)
    with pytest.raises(OutsideRoot):
        relative_inside(root, "thumbs/target.txt", "thumbnail")


def test_relative_inside_accepts_plain_catalog_path(root):
    assert relative_inside(root, "sub/file.txt", "image path") == (root / "sub" / "file.txt").resolve()


def test_confine_any_without_roots_is_refused(root):
    with pytest.raises(OutsideRoot, match="no import folders are configured"):
        confine_any([], root / "sub", "import folder")


def test_confine_any_finds_the_root_that_holds_the_path(root, tmp_path):
    second = tmp_path / "second"
    (second / "photos").mkdir(parents=True)
    assert confine_any([root, second], second / "photos", "import folder") == (second / "photos").resolve()


def test_confine_any_refuses_path_outside_every_root(root, tmp_path):
    with pytest.raises(OutsideRoot, match="not inside any") as refused:
        confine_any([root, tmp_path / "second"], tmp_path / "outside", "import folder")
    assert "import folder" in str(refused.value)


def test_confine_any_refuses_symlink_out_of_every_root(root, tmp_path):
    (root / "escape").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(OutsideRoot):
        confine_any([root], root / "escape", "import folder")
