"""The LoRA registry: importing external files, checks, storage by content."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage

from imagineer_project.testing import make_image_bytes
from training.models import Lora
from training.registry import (
    LoraInvalid,
    lora_delete,
    lora_import,
    lora_update,
    read_safetensors_header,
)

pytestmark = pytest.mark.django_db


def safetensors_bytes(tensors: dict[str, Any], metadata: dict[str, str]) -> bytes:
    from safetensors.numpy import save

    return save(tensors, metadata=metadata)


def test_importing_a_kohya_lora_stores_it_by_content_with_its_metadata(
    trained_lora: Any, staff_user: Any
) -> None:
    lora = lora_import(
        file=trained_lora.lora_path, name="Blocks v1", created_by=staff_user
    )
    data = Path(trained_lora.lora_path).read_bytes()
    assert lora.file.name == f"loras/{lora.sha256}.safetensors"
    assert default_storage.open(lora.file.name).read() == data
    assert (lora.size, lora.rank, lora.alpha) == (len(data), 4, 4.0)
    assert lora.trigger_words == ["zxq"]  # from the file's metadata
    # The file's metadata names a local folder: the LoRA keeps its name only.
    assert lora.base_model == Path(trained_lora.metadata["base_model"]).name
    assert lora.metadata["ss_network_dim"] == "4"
    assert (lora.default_weight, lora.source_run, lora.created_by) == (
        0.8,
        None,
        staff_user,
    )


def test_an_upload_imports_with_the_given_words_weight_and_base(
    trained_lora: Any,
) -> None:
    upload = io.BytesIO(Path(trained_lora.lora_path).read_bytes())
    lora = lora_import(
        file=upload,
        name="Blocks",
        trigger_words=["zxq", " blocky ", ""],
        default_weight=-1.5,
        base_model="runwayml/stable-diffusion-v1-5",
    )
    assert (lora.trigger_words, lora.default_weight, lora.base_model) == (
        ["zxq", "blocky"],
        -1.5,
        "runwayml/stable-diffusion-v1-5",
    )


def test_the_same_bytes_or_name_are_not_registered_twice(trained_lora: Any) -> None:
    lora_import(file=trained_lora.lora_path, name="Blocks")
    with pytest.raises(LoraInvalid, match="already registered as 'Blocks'"):
        lora_import(file=trained_lora.lora_path, name="Other")
    with pytest.raises(LoraInvalid, match="A LoRA named 'Blocks' is already"):
        lora_import(file=io.BytesIO(b"x"), name="Blocks")
    assert Lora.objects.count() == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "Not a .safetensors file: it is too short."),
        (make_image_bytes("PNG"), "Not a .safetensors file: its header length"),
        (struct.pack("<Q", 4) + b"nope", "Not a .safetensors file: its header is not"),
        (
            safetensors_bytes({}, {"a": "b"}),
            "Not a kohya-format LoRA (keys lora_unet_…, lora_te_… or lora_te1_…/"
            "lora_te2_… with lora_down, lora_up and alpha): the file holds no tensors",
        ),
    ],
)
def test_files_that_are_not_safetensors_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(LoraInvalid) as raised:
        lora_import(file=io.BytesIO(data), name="Bad")
    assert str(raised.value).startswith(message)
    assert not Lora.objects.exists()
    assert not default_storage.exists("loras")  # nothing stored


def test_wrong_keys_and_shapes_are_named() -> None:
    import numpy as np

    data = safetensors_bytes(
        {
            "unet.down.weight": np.zeros((4, 8), np.float32),
            "lora_unet_a.lora_down.weight": np.zeros((4, 8), np.float32),
            "lora_unet_a.lora_up.weight": np.zeros((8, 2), np.float32),
            "lora_unet_a.alpha": np.array(4.0, np.float32),
            "lora_unet_b.lora_down.weight": np.zeros((4, 8), np.float32),
        },
        {},
    )
    with pytest.raises(LoraInvalid) as raised:
        lora_import(file=io.BytesIO(data), name="Bad")
    # Every problem named, in the key rules' words (training.ml.kohya).
    shown = str(raised.value)
    assert shown.startswith("Not a kohya-format LoRA (keys lora_unet_…, lora_te_… ")
    problems = shown.split("alpha): ", 1)[1].split("; ")
    assert [p.split(":")[0] for p in problems] == [
        "unet.down.weight",
        "lora_unet_a",
        "lora_unet_b",
    ]
    assert problems[1:] == [
        "lora_unet_a: lora_down (4, 8) and lora_up (8, 2) disagree on the rank",
        "lora_unet_b: missing .lora_up.weight, .alpha",
    ]


def test_a_truncated_file_is_refused(trained_lora: Any) -> None:
    data = Path(trained_lora.lora_path).read_bytes()
    with pytest.raises(LoraInvalid, match="lies outside the file"):
        lora_import(file=io.BytesIO(data[:-100]), name="Cut")


def test_the_header_reader_needs_no_torch() -> None:
    import numpy as np

    data = safetensors_bytes(
        {"lora_unet_a.lora_down.weight": np.zeros((4, 8), np.float16)}, {"k": "v"}
    )
    info = read_safetensors_header(io.BytesIO(data), len(data))
    assert info.metadata == {"k": "v"}
    tensor = info.tensors["lora_unet_a.lora_down.weight"]
    assert (tensor.dtype, tensor.shape, tensor.ndim, tensor.numel()) == (
        "F16",
        (4, 8),
        2,
        32,
    )
    header = json.dumps({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
    bad = struct.pack("<Q", len(header)) + header.encode()  # no tensor bytes
    with pytest.raises(LoraInvalid, match="'x' is described wrongly or lies outside"):
        read_safetensors_header(io.BytesIO(bad), len(bad))


def test_weights_outside_minus_four_to_four_are_refused(trained_lora: Any) -> None:
    with pytest.raises(LoraInvalid, match="between -4.0 and 4.0 \\(got 5.0\\)"):
        lora_import(file=trained_lora.lora_path, name="Loud", default_weight=5.0)


def test_update_and_delete(trained_lora: Any) -> None:
    first = lora_import(file=trained_lora.lora_path, name="One")
    lora_update(
        lora=first, name=" Renamed ", trigger_words=["a", "b"], default_weight=1
    )
    first.refresh_from_db()
    assert (first.name, first.trigger_words, first.default_weight) == (
        "Renamed",
        ["a", "b"],
        1.0,
    )
    with pytest.raises(LoraInvalid, match="needs a name"):
        lora_update(lora=first, name=" ")
    key = first.file.name
    lora_delete(lora=first)
    assert not Lora.objects.exists()
    assert not default_storage.exists(key)


def test_the_same_bytes_are_one_lora_whoever_registers_them(
    trained_lora: Any,
) -> None:
    from django.db import IntegrityError, transaction

    first = lora_import(file=trained_lora.lora_path, name="first")
    with pytest.raises(LoraInvalid, match="already registered as 'first'"):
        lora_import(file=trained_lora.lora_path, name="second")
    # The database holds it too, for writers that skip the check.
    with pytest.raises(IntegrityError), transaction.atomic():
        Lora.objects.create(name="third", file=first.file.name, sha256=first.sha256)
    assert Lora.objects.count() == 1
