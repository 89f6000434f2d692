from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from imagineer_project.cli import run_in_foreground
from imagineer_project.errors import DomainError, Invalid
from training.generation.services import parse_lora_lines
from training.models import SetRun
from training.sets.runs import set_run_execute
from training.sets.selectors import slot_counts, slot_statuses
from training.sets.services import SetRequest, set_run_create

# The option that sets each request field, for error messages; other fields
# (prompt_template, negative_prompt) are the template's.
OPTION = {
    "template": "TEMPLATE",
    "loras": "--lora",
    "base_model": "--base-model",
    **{
        name: f"--{name}"
        for name in (
            "theme",
            "album",
            "seed",
            "variants",
            "slots",
            "width",
            "height",
            "steps",
            "guidance",
            "scheduler",
        )
    },
}


class Command(BaseCommand):
    help = (
        "Render a set (a deck, a tarot, the zodiac) from a set template into an "
        "album: one image per slot, each with its recipe. Unset options take the "
        "album's settings when it already holds this set, else the template's. "
        "Runs here with a progress bar in slots (Ctrl-C cancels), or with "
        "--enqueue hands the run to the gpu worker."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("template", help="set template slug or id")
        parser.add_argument(
            "--theme", help="the art style (default: the album's, else the example)"
        )
        parser.add_argument(
            "--album", required=True, help="album name (made if new); one set each"
        )
        parser.add_argument(
            "--lora",
            action="append",
            metavar="NAME:WEIGHT",
            help="a registered LoRA, with a weight (default: its own); repeatable; "
            "default: the album's or the template's LoRAs",
        )
        parser.add_argument(
            "--no-loras",
            action="store_true",
            help="no LoRAs, whatever the album or the template would use",
        )
        parser.add_argument("--seed", type=int, help="set seed (default: random)")
        parser.add_argument("--variants", type=int, help="images per slot")
        parser.add_argument(
            "--slots", default="", metavar="KEY,KEY", help="only these slot keys"
        )
        parser.add_argument(
            "--only-missing",
            action="store_true",
            help="only slots not filled yet (missing or failed)",
        )
        parser.add_argument("--base-model", help="folder or hub id")
        parser.add_argument("--width", type=int)
        parser.add_argument("--height", type=int)
        parser.add_argument("--steps", type=int)
        parser.add_argument("--guidance", type=float)
        parser.add_argument("--scheduler")
        parser.add_argument(
            "--enqueue", action="store_true", help="queue for the gpu worker and return"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        loras = options["lora"]
        if options["no_loras"] and loras:
            raise CommandError("--no-loras and --lora: choose one")
        if options["no_loras"]:
            loras = []
        request = SetRequest(
            template=options["template"],
            album=options["album"],
            theme=options["theme"],
            loras=None if loras is None else parse_lora_lines("\n".join(loras)),
            base_model=options["base_model"],
            width=options["width"],
            height=options["height"],
            steps=options["steps"],
            guidance=options["guidance"],
            scheduler=options["scheduler"],
            seed=options["seed"],
            variants=options["variants"],
            slots=[k for k in options["slots"].split(",") if k.strip()],
            only_missing=options["only_missing"],
        )
        try:
            run = set_run_create(
                request=request, rate_limited=False, enqueue=options["enqueue"]
            )
        except Invalid as exc:
            lines = (f"{OPTION.get(k, k)}: {v}" for k, v in exc.errors.items())
            raise CommandError("\n".join(lines) or exc.message) from exc
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            f"Set run #{run.pk}: {len(run.slot_keys)} slot(s) of {run.template.name!r} "
            f"× {run.variants} variant(s), theme {run.theme!r}, set seed "
            f"{run.set_seed}, into album {run.set_album.album.name!r}"
        )
        if options["enqueue"]:
            self.stdout.write(
                f"Queued set run #{run.pk} for the gpu worker; follow it at "
                f"{run.get_absolute_url()}"
            )
            return
        run = run_in_foreground(
            run,
            set_run_execute,
            stream=self.stderr._out,
            unit="slot",
            postfix=_where,
            quiet=options["verbosity"] < 1,
        )
        self._summary(run)
        if run.status != SetRun.Status.SUCCEEDED:
            reason = run.error or run.message
            raise CommandError(f"Set run #{run.pk} {run.status}: {reason}")
        self.stdout.write(self.style.SUCCESS(run.message))

    def _summary(self, run: SetRun) -> None:
        set_album = run.set_album
        statuses = slot_statuses(set_album)
        counts = slot_counts(statuses)
        album = set_album.album
        self.stdout.write(
            f"Album {album.name!r} (#{album.pk}, {album.get_absolute_url()}): "
            f"filled {counts['filled']}, missing {counts['missing']}, "
            f"failed {counts['failed']} of {len(statuses)} slots"
        )


def _where(run: SetRun) -> str:
    """The slot and step in hand, next to the bar."""
    if not run.current_slot:
        return ""
    return f"{run.current_slot}, step {run.current_step} of {run.render['steps']}"
