import numpy as np
import pytest

from pose6d.cad_library import CadError, CadLibrary, read_off, write_off
from conftest import box_mesh


def test_real_meshes_load(shared_cad_root):
    lib = CadLibrary(shared_cad_root)
    assert "punching_bag" in lib.categories()  # a multi-word category stays whole
    assert lib.indices("chair") == [1, 4, 8]  # gaps are kept
    mesh = lib.mesh("car", 3)
    assert mesh.vertices.shape[1] == 3 and mesh.faces.shape[1] == 3
    assert mesh.faces.max() < len(mesh.vertices)
    assert lib.mesh("car", 3) is mesh  # cached


def test_round_trip_and_polygon_faces(tmp_path):
    v, f = box_mesh(1, 2, 3)
    write_off(tmp_path / "a.off", v, f)
    v2, f2 = read_off(tmp_path / "a.off")
    np.testing.assert_allclose(v2, v, atol=1e-6)
    assert (f2 == f).all()
    (tmp_path / "quad.off").write_text("OFF\n4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n")
    _, fq = read_off(tmp_path / "quad.off")
    assert fq.tolist() == [[0, 1, 2], [0, 2, 3]]


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("PLY\n", "no OFF header"),
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n", "corrupt"),  # truncated
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "out of range"),
    ("OFF\n3 1 0\n0 0 0\n1 nan 0\n0 1 0\n3 0 1 2\n", "non-finite"),
    ("OFF\n0 0 0\n", "no vertices"),
    ("OFF\n3 1 0\n0 0 0\n1 x 0\n0 1 0\n3 0 1 2\n", "corrupt"),
])
def test_bad_off_files_name_the_file(tmp_path, text, words):
    path = tmp_path / "bad.off"
    path.write_text(text)
    with pytest.raises(CadError) as err:
        read_off(path)
    assert str(path) in str(err.value) and words in str(err.value)


def test_missing_and_unknown(tmp_path):
    v, f = box_mesh(1, 1, 1)
    write_off(tmp_path / "car" / "01.off", v, f)
    lib = CadLibrary(tmp_path)
    with pytest.raises(CadError, match="no CAD model 2"):
        lib.mesh("car", 2)
    with pytest.raises(CadError, match="unknown category 'boat'"):
        lib.mesh("boat", 1)
    with pytest.raises(CadError, match="invalid category"):
        lib.mesh("../etc", 1)
    with pytest.raises(CadError, match="not found"):
        read_off(tmp_path / "nope.off")
