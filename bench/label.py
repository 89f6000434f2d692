"""Labeling throughput and memory against the local Messages API fake (by hand or
`make bench`).

Runs real labeling jobs (real SDK, real database and files, the fake API on
127.0.0.1) in a throwaway SQLite database and media folder. Prints figures;
asserts nothing. Targets from the labeling issue:
  - with 500 ms API latency, throughput >= 90% of concurrency / latency at
    concurrency 1, 4 and 8;
  - memory flat over 1,000 images.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import setup_django  # noqa: E402


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def make_album(name: str, count: int) -> object:
    from albums.services import album_create, image_ingest
    from imagineer_project.testing import make_image_bytes

    album = album_create(name=name)
    for i in range(count):
        image_ingest(
            data=make_image_bytes("JPEG", (640, 480), seed=hash((name, i)) & 0xFFFFFF),
            filename=f"{i}.jpg",
            source_kind="upload",
            album=album,
        )
    return album


def run_job(album: object, on_progress: object = None) -> tuple[float, object]:
    from imagineer_project.runs import run_execute
    from labeling.models import LabelingJob
    from labeling.runs import labeling_job_execute
    from labeling.services import labeling_job_create

    job = labeling_job_create(album=album, enqueue=False)
    started = time.perf_counter()
    run_execute(LabelingJob, job.pk, lambda j: labeling_job_execute(j, on_progress))
    elapsed = time.perf_counter() - started
    job.refresh_from_db()
    return elapsed, job


def bench_throughput(latency: float, per_worker: int) -> None:
    from django.conf import settings

    print(f"== Throughput: fake API latency {latency * 1000:.0f} ms ==")
    for concurrency in (1, 4, 8):
        settings.LABELING_CONCURRENCY = concurrency
        album = make_album(f"throughput-{concurrency}", per_worker * concurrency)
        elapsed, job = run_job(album)
        rate = job.labeled_count / elapsed
        ideal = concurrency / latency
        print(
            f"  concurrency {concurrency}: {job.labeled_count} images in "
            f"{elapsed:.2f} s = {rate:.2f} images/s; ideal {ideal:.2f}; "
            f"{100 * rate / ideal:.0f}% (target >= 90%)"
        )


def bench_memory(count: int) -> None:
    from django.conf import settings

    settings.LABELING_CONCURRENCY = 8
    print(f"== Memory over {count:,} images (latency 5 ms, concurrency 8) ==")
    album = make_album("memory", count)
    samples: list[tuple[int, float]] = []

    def sample(job: object) -> None:
        done = job.progress_done
        if done in (100, count // 4, count // 2, 3 * count // 4, count):
            samples.append((done, rss_mib()))

    elapsed, job = run_job(album, sample)
    for done, rss in samples:
        print(f"  after {done:>5} images: RSS {rss:.1f} MiB")
    growth = samples[-1][1] - samples[0][1] if samples else 0.0
    print(
        f"  {job.labeled_count} labeled in {elapsed:.1f} s; RSS growth from image 100 "
        f"to {count}: {growth:+.1f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument(
        "--per-worker", type=int, default=12, help="images per unit of concurrency"
    )
    parser.add_argument("--memory-images", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        setup_django(Path(workdir))
        from django.conf import settings

        from imagineer_project.testing.fake_anthropic import API_KEY, FakeAnthropic

        # As in production: DEBUG would keep every SQL query in memory.
        settings.DEBUG = False

        with FakeAnthropic(latency=args.latency, keep_requests=False) as fake:
            settings.ANTHROPIC_API_KEY = API_KEY
            settings.ANTHROPIC_BASE_URL = fake.base_url
            bench_throughput(args.latency, args.per_worker)
            fake.latency = 0.005
            bench_memory(args.memory_images)


if __name__ == "__main__":
    main()
