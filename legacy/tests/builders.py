"""A realistic tree of the old system's files, built in a temporary folder:
what a user brings to `import_legacy`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from imagineer_project.testing import make_image_bytes


@dataclass
class LegacyTree:
    outputs: Path
    packs: Path
    outside: Path


def _image(path: Path, seed: int, fmt: str = "PNG") -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = make_image_bytes(fmt, (96, 80), seed=seed)
    path.write_bytes(data)
    return data


def _sidecar(image: Path, **data: object) -> None:
    image.with_suffix(".json").write_text(json.dumps(data))


def build_legacy_tree(tmp: Path) -> LegacyTree:
    outputs, packs, outside = tmp / "outputs", tmp / "image packs", tmp / "outside"
    # Singles at the root: a sidecar with one LoRA and created_at...
    fox = outputs / "20240312_101500_a_red_fox.png"
    _image(fox, 1)
    _sidecar(
        fox,
        prompt="a red fox in snow",
        negative_prompt="blurry",
        model="runwayml/stable-diffusion-v1-5",
        width=512,
        height=512,
        steps=30,
        guidance_scale=8.0,
        seed=42,
        created_at="2024-03-12T10:15:00",
        lora={"path": "/mnt/speedy/loras/fox_style.safetensors", "weight": 0.7},
    )
    # ...one dated by its sidecar's timestamp alone, with two LoRAs...
    moon = outputs / "moon.png"
    _image(moon, 2)
    _sidecar(
        moon,
        prompt="a moon over the sea",
        seed=7,
        steps=25,
        guidance_scale=7.5,
        timestamp="2023-11-02T08:00:00Z",
        loras=[
            {
                "path": "/mnt/speedy/loras/night.safetensors",
                "name": "night",
                "weight": 0.5,
            },
            {"path": "C:\\loras\\ink.safetensors", "weight": "0.3"},
        ],
    )
    # ...a broken sidecar (dated by the name), and no sidecar, no date at all.
    broken = outputs / "20240401-090000_broken_json.png"
    _image(broken, 3)
    broken.with_suffix(".json").write_text("{not json")
    _image(outputs / "sketch.png", 4)
    # Folders: decks, zodiac, LoRA tests, another batch.
    for n, name in enumerate(("ace_of_spades", "queen_of_hearts")):
        card = outputs / "card_deck_antique" / f"{name}.png"
        _image(card, 10 + n)
        _sidecar(card, prompt=f"{name.replace('_', ' ')}, ornate card", seed=100 + n)
    fool = outputs / "tarot_deck_mystic" / "the_fool.png"
    _image(fool, 20)
    _sidecar(fool, prompt="the fool tarot card", seed=5)
    aries = _image(outputs / "zodiac_night" / "aries.png", 30)
    _image(outputs / "lora_tests" / "plain.png", 40)
    _image(outputs / "lora_tests" / "sketchy" / "s1.png", 41)
    _image(outputs / "card_sets_2023 misc" / "x.png", 50)
    # A byte-identical copy in a second folder.
    (outputs / "lora_tests" / "aries_again.png").write_bytes(aries)
    # What is not imported: a corrupt file, a symlink out of the tree, the old
    # thumbnails, a note, a sidecar with no image.
    (outputs / "card_deck_antique" / "broken.png").write_bytes(b"\x89PNG\r\n garbage")
    _image(outside / "secret.png", 60)
    (outputs / "escape.png").symlink_to(outside / "secret.png")
    _image(outputs / "thumbnails" / "1.png", 70)
    (outputs / "README.md").write_text("the old outputs")
    (outputs / "lost.json").write_text("{}")
    # Image packs: folders of images with .txt captions.
    _image(packs / "tarot_refs" / "t1.jpg", 80, "JPEG")
    (packs / "tarot_refs" / "t1.txt").write_text("  The Magician, red robe\n")
    _image(packs / "tarot_refs" / "t2.jpg", 81, "JPEG")
    _image(packs / "zodiac refs" / "z1.png", 90)
    (packs / "zodiac refs" / "z1.txt").write_text("Taurus, a bull in gold")
    return LegacyTree(outputs, packs, outside)
