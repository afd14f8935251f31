import numpy as np
import pytest

from pose6d.camera import Pose
from pose6d.dataset import ObjectRecord, write_record
from pose6d.errors import DataError
from pose6d.inout import _load_plain_npz, load_npz, save_npz


def reference_load(path):
    with np.load(path, allow_pickle=True) as data:
        return {k: data[k].item() if data[k].ndim == 0 else data[k] for k in data.files}


def test_fast_npz_path_equals_numpy(tmp_path):
    record = ObjectRecord(Pose.from_degrees(10, 20, 30, 4, 5, 6), 3,
                          {"bbox": np.array([1.0, 2, 3, 4]), "annotator": "a@b.c",
                           "object_status": "status_good", "fortran": np.asfortranarray(np.ones((2, 3)))})
    path = tmp_path / "r.npz"
    write_record(path, record)
    fast, slow = _load_plain_npz(path), reference_load(path)
    assert fast.keys() == slow.keys()
    for name, value in slow.items():
        assert type(fast[name]) is type(value) and np.array_equal(fast[name], value), name


def test_object_arrays_and_corrupt_files(tmp_path):
    arr = np.empty(1, dtype=object)
    arr[0] = {"a": 1}
    save_npz(tmp_path / "obj.npz", {"annotations": arr})
    with pytest.raises(ValueError):
        _load_plain_npz(tmp_path / "obj.npz")  # not plain: load_npz falls back to np.load
    assert load_npz(tmp_path / "obj.npz", allow_pickle=True)["annotations"][0] == {"a": 1}
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="bad.npz"):
        load_npz(tmp_path / "bad.npz")
    with pytest.raises(DataError, match="not found"):
        load_npz(tmp_path / "missing.npz")


@pytest.mark.parametrize("text", ["car/a_\u00b2", "car/a_\u0663", "car/a_03", "car/a_", "car/a_-1"])
def test_object_keys_are_canonical(text):
    from pose6d.dataset import ObjectKey

    with pytest.raises(DataError):
        ObjectKey.parse(text)
    assert str(ObjectKey.parse("car/a_b_10")) == "car/a_b_10"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)],
                         ids=["umask022", "umask077", "umask002"])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    """Atomic writes (records, images, exports, demo datasets) get the mode any tool would, not
    mkstemp's owner-only 0600, which a container's user or Label Studio's could not read."""
    import os
    import stat

    from pose6d.inout import atomic_write_bytes, write_image

    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "sub" / "a.bin", b"x")
        atomic_write_bytes(tmp_path / "sub" / "a.bin", b"replaced")  # a rewrite too
        save_npz(tmp_path / "r.npz", {"a": np.ones(2)})
        write_image(tmp_path / "i.png", np.zeros((2, 2, 3), np.uint8))
    finally:
        os.umask(old)
    for name in ("sub/a.bin", "r.npz", "i.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert (tmp_path / "sub/a.bin").read_bytes() == b"replaced"
    assert sorted(p.name for p in tmp_path.rglob("*.tmp")) == []  # no temporary file left
