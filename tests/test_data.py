"""Behaviour of enastool.data: CIFAR-10 pickles, download, digits, and the device loader."""

import hashlib
import http.server
import io
import pickle
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from enastool.data import (
    NO_AUGMENT, Augment, DeviceLoader, channel_stats, dataset_names, download_cifar10, endless,
    load_dataset,
)
from enastool.data import cifar10, download
from enastool.errors import EnasError

PER_BATCH = 20
NUM_TRAIN = PER_BATCH * len(cifar10.TRAIN_FILES)  # 100 fake training images


# ---------------------------------------------------------------------------- fake CIFAR-10

def fake_batch(first: int, count: int) -> dict:
    """A batch in the real format; image n carries its global number n in pixel (0, 0, 0)."""
    data = np.zeros((count, cifar10.PIXELS_PER_IMAGE), dtype=np.uint8)
    data[:, 0] = np.arange(first, first + count)
    labels = [(first + i) % cifar10.NUM_CLASSES for i in range(count)]
    return {b"batch_label": b"fake", b"labels": labels, b"data": data}


def write_pickle(path: Path, obj) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def make_fake_cifar(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(cifar10.TRAIN_FILES):
        write_pickle(folder / name, fake_batch(i * PER_BATCH, PER_BATCH))
    test = fake_batch(1000, PER_BATCH)
    test[b"labels"] = [3] * PER_BATCH
    write_pickle(folder / cifar10.TEST_FILE, test)
    return folder


def first_pixels(images: torch.Tensor) -> list[int]:
    return images[:, 0, 0, 0].tolist()


def test_cifar_reads_shapes_labels_and_numbering(tmp_path):
    make_fake_cifar(tmp_path)
    splits = load_dataset("cifar10", tmp_path, purpose="final")
    assert splits.train.images.shape == (NUM_TRAIN, 3, 32, 32)
    assert splits.train.images.dtype == torch.uint8 and splits.train.labels.dtype == torch.int64
    assert first_pixels(splits.train.images) == list(range(NUM_TRAIN))  # batches 1..5 in order
    assert splits.train.labels.tolist() == [n % 10 for n in range(NUM_TRAIN)]
    assert splits.test.labels.tolist() == [3] * PER_BATCH
    assert (splits.info.channels, splits.info.size, splits.info.num_classes) == (3, 32, 10)


def test_cifar_keeps_channel_order(tmp_path):
    make_fake_cifar(tmp_path)
    batch = fake_batch(0, PER_BATCH)
    # Channel-major rows: channel 1, row 5, column 7 of image 2.
    batch[b"data"][2, 1 * 32 * 32 + 5 * 32 + 7] = 200
    write_pickle(tmp_path / "data_batch_1", batch)
    images = load_dataset("cifar10", tmp_path, purpose="final").train.images
    assert images[2, 1, 5, 7] == 200
    assert images[2, 0, 5, 7] == 0 and images[2, 2, 5, 7] == 0 and images[2, 1, 7, 5] == 0


def test_cifar_search_holds_out_the_last_tenth_and_final_uses_all(tmp_path):
    make_fake_cifar(tmp_path / cifar10.FOLDER)  # the archive's subfolder is found too
    search = load_dataset("cifar10", tmp_path, purpose="search")
    assert search.sizes() == {"train": 90, "valid": 10, "test": 20}
    assert first_pixels(search.valid.images) == list(range(90, 100))
    final = load_dataset("cifar10", tmp_path, purpose="final")
    assert final.sizes() == {"train": 100, "valid": 20, "test": 20}
    assert torch.equal(final.valid.images, final.test.images)
    assert cifar10.valid_size(50_000) == 5_000 and cifar10.valid_size(5) == 1


def test_cifar_normalisation_stats_come_from_the_train_split(tmp_path):
    make_fake_cifar(tmp_path)
    search = load_dataset("cifar10", tmp_path, purpose="search")
    pixels = search.train.images.double() / 255
    assert search.info.mean == pytest.approx(pixels.mean(dim=(0, 2, 3)).tolist())
    assert search.info.std == pytest.approx(pixels.std(dim=(0, 2, 3), unbiased=False).tolist())


def test_cifar_reads_files_written_by_numpy_1(tmp_path):
    make_fake_cifar(tmp_path)
    # The real files name numpy.core.multiarray (numpy 1.x); numpy 2 writes numpy._core.
    raw = pickle.dumps(fake_batch(0, PER_BATCH), protocol=2)
    (tmp_path / "data_batch_1").write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert load_dataset("cifar10", tmp_path, purpose="final").train.num_examples == NUM_TRAIN


class Boom:
    def __reduce__(self):
        return (Path.touch, (Path("BOOM"),))


def corrupt(folder: Path, kind: str) -> str:
    """Spoil ``folder``'s data_batch_2 in one way; return the file name the error must name."""
    path = folder / "data_batch_2"
    good = pickle.dumps(fake_batch(PER_BATCH, PER_BATCH), protocol=2)
    if kind == "missing":
        path.unlink()
    elif kind == "not a pickle":
        path.write_text("hello, I am a text file\n")
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "wrong keys":
        write_pickle(path, {b"pixels": 1, b"labels": []})
    elif kind == "wrong shape":
        write_pickle(path, {b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4})
    elif kind == "bad labels":
        write_pickle(path, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    elif kind == "code":
        write_pickle(path, {b"data": Boom(), b"labels": []})
    elif kind == "ragged bytes":  # raw bytes that are not a whole number of 3072-byte images
        write_pickle(path, {b"data": bytes(2 * cifar10.PIXELS_PER_IMAGE + 5), b"labels": [0, 0]})
    elif kind == "huge length":  # a BINBYTES8 opcode claiming 2**62 bytes in a 20-byte file
        path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"abc")
    elif kind == "memo bomb":  # LONG_BINPUT at index 2**31: CPython would zero a 32 GiB memo first
        path.write_bytes(b"\x80\x02]r" + struct.pack("<I", 2**31) + b".")
    elif kind == "boolean labels":
        write_pickle(path, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [True, 0]})
    elif kind == "a folder":
        path.unlink()
        path.mkdir()
    return "data_batch_2"


# what the one line says about each spoilt file
PROBLEMS = {
    "missing": "is missing", "not a pickle": "is not a readable CIFAR-10 pickle batch",
    "truncated": "is a damaged pickle (it claims more data than it holds)", "wrong keys": "lacks the b'data' and b'labels'",
    "wrong shape": "holds data of shape (4, 100)", "bad labels": "needs 2 labels in 0..9",
    "code": "is not a readable CIFAR-10 pickle batch (refused global __builtin__.getattr)",
    "ragged bytes": "holds 6,149 bytes of image data, not a whole number of 3072-byte images",
    "huge length": "is a damaged pickle (it claims more data than it holds)",
    "memo bomb": "is a damaged pickle (memo index 2147483648 at opcode 2)",
    "boolean labels": "needs 2 labels in 0..9", "a folder": "is not a file",
}


@pytest.mark.parametrize("kind", sorted(PROBLEMS))
def test_cifar_bad_batch_gives_one_line_error_naming_the_file(tmp_path, kind, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = make_fake_cifar(tmp_path / "d")
    name = corrupt(folder, kind)
    with pytest.raises(EnasError) as caught:
        load_dataset("cifar10", folder)
    message = str(caught.value)
    assert "\n" not in message and f"{folder / name} {PROBLEMS[kind]}" in message
    assert "enastool data download cifar10" in message
    assert not (tmp_path / "BOOM").exists()  # the refused global never ran


def test_cifar_bad_download_folder_is_to_be_deleted(tmp_path):
    folder = make_fake_cifar(tmp_path / cifar10.FOLDER)
    (folder / "test_batch").write_bytes(b"")
    with pytest.raises(EnasError, match=f"test_batch is not a readable .*; delete {folder} and run"):
        load_dataset("cifar10", tmp_path)


def test_cifar_missing_directory_says_how_to_download(tmp_path):
    with pytest.raises(EnasError, match=r"does not exist; run `enastool data download cifar10 --data-dir"):
        load_dataset("cifar10", tmp_path / "nowhere")
    with pytest.raises(EnasError, match="no data_batch_1"):
        load_dataset("cifar10", tmp_path)


def test_a_data_directory_for_the_bundled_digits_is_refused(tmp_path):
    with pytest.raises(EnasError, match=r"--data-dir .*: the digits data set needs no files .*drop --data-dir"):
        load_dataset("digits", tmp_path)


def test_unknown_dataset_and_purpose_are_user_errors():
    with pytest.raises(EnasError, match="digits, cifar10"):
        load_dataset("mnist")
    with pytest.raises(EnasError, match="search, final"):
        load_dataset("digits", purpose="eval")
    assert dataset_names() == ("digits", "cifar10")


# ---------------------------------------------------------------------------- download

def make_archive(tmp_path: Path, extra: tarfile.TarInfo | None = None) -> tuple[Path, str]:
    source = make_fake_cifar(tmp_path / "src" / cifar10.FOLDER)
    archive = tmp_path / "fake.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname=cifar10.FOLDER)
        if extra is not None:
            tar.addfile(extra, io.BytesIO(b"x" * extra.size))
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def test_download_verifies_and_extracts_a_local_archive(tmp_path):
    archive, md5 = make_archive(tmp_path)
    seen = []
    folder = download_cifar10(tmp_path / "data", lambda done, total: seen.append((done, total)),
                              url=archive.as_uri(), md5=md5)
    assert folder == tmp_path / "data" / cifar10.FOLDER
    assert seen[-1] == (archive.stat().st_size, archive.stat().st_size)
    assert load_dataset("cifar10", tmp_path / "data").sizes()["train"] == 90
    assert [p.name for p in (tmp_path / "data").iterdir() if p.name.startswith(".")] == []  # no scratch left
    archive.unlink()  # already present: a no-op that needs no source
    assert download_cifar10(tmp_path / "data", url=str(archive), md5=md5) == folder


def test_download_refuses_a_checksum_mismatch(tmp_path):
    archive, _ = make_archive(tmp_path)
    with pytest.raises(EnasError, match="does not match"):
        download_cifar10(tmp_path / "data", url=str(archive), md5="0" * 32)
    assert not (tmp_path / "data" / download.ARCHIVE_NAME).exists()
    assert not (tmp_path / "data" / cifar10.FOLDER).exists()


def test_download_resumes_a_part_file_from_a_local_path(tmp_path):
    archive, md5 = make_archive(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    half = archive.stat().st_size // 2
    (data / (download.ARCHIVE_NAME + ".part")).write_bytes(archive.read_bytes()[:half])
    seen = []
    download_cifar10(data, lambda done, total: seen.append(done), url=str(archive), md5=md5)
    assert seen[0] == half
    assert (data / download.ARCHIVE_NAME).read_bytes() == archive.read_bytes()


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one payload, honouring ``Range: bytes=N-``; records the ranges it was asked for."""

    payload = b""
    ranges: list = []

    def do_GET(self):
        asked = self.headers.get("Range")
        self.ranges.append(asked)
        start = int(asked.split("=")[1].rstrip("-")) if asked else 0
        body = self.payload[start:]
        self.send_response(206 if asked else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        """The server prints nothing: test output stays readable."""


def test_download_resumes_over_http_with_a_range_request(tmp_path):
    archive, md5 = make_archive(tmp_path)
    RangeHandler.payload, RangeHandler.ranges = archive.read_bytes(), []
    server = http.server.HTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        data = tmp_path / "data"
        data.mkdir()
        (data / (download.ARCHIVE_NAME + ".part")).write_bytes(RangeHandler.payload[:100])
        url = f"http://127.0.0.1:{server.server_port}/cifar.tar.gz"
        download_cifar10(data, url=url, md5=md5)
    finally:
        server.shutdown()
        server.server_close()
    assert RangeHandler.ranges == ["bytes=100-"]
    assert (data / cifar10.FOLDER / "test_batch").is_file()


def test_unreachable_url_is_a_one_line_error(tmp_path):
    with pytest.raises(EnasError) as caught:
        download_cifar10(tmp_path, url="http://127.0.0.1:9/cifar.tar.gz", md5="0" * 32)
    assert "cannot download" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["../evil", f"{cifar10.FOLDER}/../../evil", "/tmp/evil-abs"])
def test_extraction_refuses_members_escaping_the_folder(tmp_path, name):
    member = tarfile.TarInfo(name)
    member.size = 1
    archive, md5 = make_archive(tmp_path, extra=member)
    with pytest.raises(EnasError, match="refusing archive member"):
        download_cifar10(tmp_path / "data", url=str(archive), md5=md5)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "data" / cifar10.FOLDER).exists()


def test_extraction_refuses_links(tmp_path):
    link = tarfile.TarInfo(f"{cifar10.FOLDER}/passwd")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    archive, md5 = make_archive(tmp_path, extra=link)
    with pytest.raises(EnasError, match="not a plain file"):
        download_cifar10(tmp_path / "data", url=str(archive), md5=md5)


# ---------------------------------------------------------------------------- digits

def test_digits_split_sizes_and_formats():
    search = load_dataset("digits")
    assert search.sizes() == {"train": 1248, "valid": 181, "test": 368}
    assert search.train.images.shape[1:] == (1, 8, 8) and search.train.images.dtype == torch.uint8
    assert int(search.train.images.max()) == 255
    for split in (search.train, search.valid, search.test):
        assert sorted(split.labels.unique().tolist()) == list(range(10))
    final = load_dataset("digits", purpose="final")
    assert final.sizes() == {"train": 1429, "valid": 368, "test": 368}
    assert torch.equal(final.valid.labels, search.test.labels)


def test_digits_split_never_changes():
    first, second = load_dataset("digits"), load_dataset("digits")
    assert torch.equal(first.valid.images, second.valid.images)
    # Fixed by the rule, not by a seed: the first valid example is class 0's third image.
    assert first.valid.labels[:3].tolist() == [0, 1, 2]


# ---------------------------------------------------------------------------- loader

def numbered_images(count=12, channels=3, size=6, seed=0):
    """Random uint8 images, labels = their own index so every batch says which images it holds."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, channels, size, size), generator=generator, dtype=torch.uint8)
    return images, torch.arange(count)


def plain(images):
    """What an unnormalised (mean 0, std 1) loader holds for ``images``."""
    return images.float() / 255


def test_eval_loader_normalises_once_with_the_given_stats():
    images, labels = numbered_images(count=10)
    mean, std = channel_stats(images)
    loader = DeviceLoader(images, labels, 4, mean=mean, std=std, train=False)
    batches = list(loader)
    assert [len(y) for _, y in batches] == [4, 4, 2] and len(loader) == 3
    x = torch.cat([b for b, _ in batches])
    assert torch.cat([y for _, y in batches]).tolist() == list(range(10))  # in order
    assert x.mean(dim=(0, 2, 3)).tolist() == pytest.approx([0, 0, 0], abs=1e-5)
    assert x.std(dim=(0, 2, 3), unbiased=False).tolist() == pytest.approx([1, 1, 1], abs=1e-5)


def test_augmentation_keeps_shape_dtype_and_memory_format():
    images, labels = numbered_images(count=8, size=8)
    loader = DeviceLoader(images, labels, 4, train=True, augment=Augment(pad=2, flip=True, cutout=3),
                          channels_last=True, dtype=torch.bfloat16)
    x, y = next(iter(loader))
    assert x.shape == (4, 3, 8, 8) and x.dtype == torch.bfloat16 and y.shape == (4,)
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_flip_mirrors_whole_images():
    images, labels = numbered_images(count=16)
    loader = DeviceLoader(images, labels, 16, train=True, augment=Augment(pad=0, flip=True), seed=3)
    x, y = next(iter(loader))
    original = plain(images[y])
    flipped = torch.tensor([torch.equal(a, b.flip(2)) for a, b in zip(x, original)])
    same = torch.tensor([torch.equal(a, b) for a, b in zip(x, original)])
    assert bool((flipped | same).all()) and 0 < int(flipped.sum()) < 16


def test_crop_shifts_content_within_the_zero_padding():
    images, labels = numbered_images(count=16)
    pad = 2
    loader = DeviceLoader(images, labels, 16, train=True, augment=Augment(pad=pad, flip=False), seed=1)
    x, y = next(iter(loader))
    padded = torch.nn.functional.pad(plain(images[y]), (pad,) * 4)
    offsets = []
    for crop, source in zip(x, padded):
        found = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                 if torch.equal(crop, source[:, dy:dy + 6, dx:dx + 6])]
        assert found, "every crop is a window of the padded image"
        offsets.append(found[0])
    assert len(set(offsets)) > 1 and any(o != (pad, pad) for o in offsets)


def test_cutout_zeroes_one_clipped_square_per_image():
    images = torch.full((16, 1, 8, 8), 255, dtype=torch.uint8)
    side = 3
    loader = DeviceLoader(images, torch.arange(16), 16, train=True,
                          augment=Augment(pad=0, flip=False, cutout=side), seed=5)
    x, _ = next(iter(loader))
    full_squares = 0
    for image in x[:, 0]:
        zero = image == 0
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        height, width = len(rows), len(cols)
        assert 2 <= height <= side and 2 <= width <= side  # clipped at an edge, never gone
        assert rows.tolist() == list(range(rows[0], rows[0] + height))  # contiguous
        assert int(zero.sum()) == height * width  # a filled rectangle
        assert bool((image[~zero] == 1).all())
        full_squares += (height, width) == (side, side)
    assert full_squares > 0


def test_same_seed_same_batches_other_seed_other_order():
    images, labels = numbered_images()

    def epoch(seed):
        loader = DeviceLoader(images, labels, 4, train=True, augment=Augment(pad=1, cutout=2), seed=seed)
        return list(loader)

    first, again, other = epoch(7), epoch(7), epoch(8)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert torch.cat([y for _, y in first]).tolist() != torch.cat([y for _, y in other]).tolist()


def test_augmentation_that_destroys_the_images_is_refused():
    images, labels = numbered_images(count=6)  # 6x6 images
    with pytest.raises(EnasError, match="cutout 6 covers the whole 6x6 image"):
        DeviceLoader(images, labels, 4, train=True, augment=Augment(pad=0, cutout=6))
    with pytest.raises(EnasError, match="augment_pad 3 shifts 6x6 images"):
        DeviceLoader(images, labels, 4, train=True, augment=Augment(pad=3))
    assert DeviceLoader(images, labels, 4, train=True, augment=Augment(pad=2, cutout=5)).augment.cutout == 5
    assert DeviceLoader(images, labels, 4, train=False, augment=Augment(pad=3)).augment.pad == 0  # eval: none


def test_every_image_once_per_epoch_and_a_new_order_next_epoch():
    images, labels = numbered_images(count=10)
    loader = DeviceLoader(images, labels, 4, train=True, drop_last=False, augment=Augment(pad=1))
    epochs = [torch.cat([y for _, y in loader]).tolist() for _ in range(2)]
    assert [sorted(e) for e in epochs] == [list(range(10))] * 2 and epochs[0] != epochs[1]
    dropping = DeviceLoader(images, labels, 4, train=True, augment=Augment(pad=1))
    seen = torch.cat([y for _, y in dropping]).tolist()
    assert len(dropping) == 2 and len(seen) == 8 == len(set(seen))


def test_state_dict_resumes_at_the_exact_batch():
    images, labels = numbered_images()

    def make():
        return DeviceLoader(images, labels, 4, train=True, augment=Augment(pad=1, cutout=2), seed=11)

    def take(batches, count):
        return [next(batches) for _ in range(count)]

    running = make()
    batches = endless(running)
    take(batches, 4)  # one epoch (3 batches) and one more
    buffer = io.BytesIO()
    torch.save(running.state_dict(), buffer)
    expected = take(batches, 5)  # crosses the next epoch boundary

    resumed = make()
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert (resumed.epoch, resumed.position) == (1, 1)
    got = take(endless(resumed), 5)
    for (xa, ya), (xb, yb) in zip(expected, got):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)


def test_endless_runs_past_the_epoch_and_refuses_an_empty_loader():
    images, labels = numbered_images(count=6)
    reward = DeviceLoader(images, labels, 4, train=False, shuffle=True, drop_last=True)
    batches = endless(reward)
    seen = [next(batches)[1] for _ in range(3)]
    assert reward.epoch == 2 and all(len(y) == 4 for y in seen)
    with pytest.raises(EnasError, match="larger than the 6 images"):
        endless(DeviceLoader(images, labels, 8, train=True, augment=Augment(pad=1)))


def test_for_split_scales_crop_padding_to_the_image_size():
    splits = load_dataset("digits")
    loader = DeviceLoader.for_split(splits.train, splits.info, 32, train=True)
    assert loader.augment == Augment(pad=1, flip=True, cutout=0)
    assert DeviceLoader.for_split(splits.valid, splits.info, 32, train=False).augment == NO_AUGMENT
    assert Augment.for_size(32).pad == 4
