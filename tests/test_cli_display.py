"""The live display on stderr: frames at 80 columns, the ETA, plain lines, the loading line."""

from __future__ import annotations

import re
import time
from io import StringIO

import pytest
from rich.console import Console
from rich.text import Text

from enastool_cli.progress import ProgressReporter, clock, eta_seconds

STEPS_PER_EPOCH = 312  # the paper's micro search: 150 epochs of 45,000 images in batches of 144
EPOCHS = 150
TOTAL = STEPS_PER_EPOCH * EPOCHS
START = {"kind": "start", "epochs": EPOCHS, "steps_per_epoch": STEPS_PER_EPOCH, "total_steps": TOTAL,
         "start_step": 0, "start_epoch": 0, "device": "cuda:0"}
FIGURES = {"kind": "step", "epoch": 2.08, "loss": 1.234, "acc": 0.5, "lr": 0.05, "images_per_s": 2345.6}
CLOCK = re.compile(r"\d+:\d\d:\d\d")


def terminal(width: int) -> tuple[Console, StringIO]:
    buffer = StringIO()
    return Console(force_terminal=True, width=width, file=buffer, highlight=False), buffer


def last_frame(reporter: ProgressReporter, buffer: StringIO) -> list[str]:
    """The lines of the frame the display draws now (without colours and cursor moves)."""
    reporter._display.refresh()
    frames = Text.from_ansi(buffer.getvalue()).plain
    rows = 1 + (reporter._epoch_task is not None) + bool(reporter._display.figures)
    return frames.splitlines()[-rows:]


def drive(reporter: ProgressReporter, steps: int) -> None:
    reporter(START)
    time.sleep(0.05)  # some elapsed time, so that the pace (and the ETA) is known
    for step in range(1, steps + 1):
        reporter({"kind": "tick", "step": step})
    reporter({**FIGURES, "step": steps})


@pytest.mark.parametrize("width", [80, 160])
def test_frames_show_the_bar_count_elapsed_and_eta_at_80_and_160_columns(width):
    console, buffer = terminal(width)
    with ProgressReporter("search micro enas", console=console) as reporter:
        assert reporter.live
        drive(reporter, 650)
        bar, epochs, figures = last_frame(reporter, buffer)
    for row in (bar, epochs):
        assert len(row) <= width and "…" not in row  # nothing squeezed to an ellipsis
        assert "━" * 10 in row  # a bar of at least BAR_MIN_WIDTH
        elapsed, eta = CLOCK.findall(row)  # elapsed time, then the ETA
        assert row.rstrip().endswith(f"{elapsed} eta {eta}")
    assert bar.startswith("search micro enas") and f"650/{TOTAL}" in bar
    assert epochs.startswith("epochs") and f"2/{EPOCHS}" in epochs  # ticks, not epoch events, moved it
    assert figures.strip() == "epoch 2.08  loss 1.234  acc 0.500  lr 5.00e-02  img/s 2346"


def test_the_eta_comes_from_the_whole_elapsed_time_on_both_bars():
    console, buffer = terminal(80)
    with ProgressReporter("train-final", console=console) as reporter:
        drive(reporter, 650)
        bar, epochs, _ = last_frame(reporter, buffer)
        elapsed = reporter._display.tasks[0].elapsed
    expected = eta_seconds(elapsed, 650, 0, TOTAL)
    for row in (bar, epochs):
        shown = CLOCK.findall(row)[1]
        hours, minutes, seconds = map(int, shown.split(":"))
        # the frame was drawn a moment before `elapsed` was read: within a second or two
        assert abs(hours * 3600 + minutes * 60 + seconds - expected) <= max(2.0, 0.05 * expected)


def test_a_narrow_terminal_cuts_the_title_never_the_count_or_times():
    console, buffer = terminal(50)
    with ProgressReporter("derive runs/a/very/long/run/directory", console=console) as reporter:
        drive(reporter, 10)
        bar = last_frame(reporter, buffer)[0]
    assert len(bar) <= 50 and f"10/{TOTAL}" in bar and len(CLOCK.findall(bar)) == 2
    assert "…" in bar.split("━")[0]  # the title gave way


def test_a_resumed_run_counts_its_pace_from_the_resume():
    console, buffer = terminal(80)
    with ProgressReporter("search", console=console) as reporter:
        reporter({**START, "start_step": 20000, "start_epoch": 64})
        time.sleep(0.05)
        reporter({"kind": "tick", "step": 20001})
        bar, epochs, *_ = last_frame(reporter, buffer)
    eta = CLOCK.findall(bar)[1]
    assert f"20001/{TOTAL}" in bar and f"64/{EPOCHS}" in epochs
    # one step in some 0.05 s: the 26,799 left take minutes, not the hours 20,001 steps would say
    hours, minutes, _ = map(int, eta.split(":"))
    assert 0 < hours * 60 + minutes < 60


def test_the_loading_line_shows_from_the_start_and_leaves_nothing_when_it_fails():
    console, buffer = terminal(80)
    with pytest.raises(RuntimeError):
        with ProgressReporter("search micro enas", console=console) as reporter:
            reporter.status("importing torch")
            reporter._display.refresh()
            shown = Text.from_ansi(buffer.getvalue()).plain
            assert "search micro enas: importing torch..." in shown and CLOCK.search(shown)
            raise RuntimeError("the data could not be read")
    erase_the_line_above = "\x1b[1A\x1b[2K"  # the spinner line is wiped: the error line follows
    assert buffer.getvalue().endswith(erase_the_line_above)


def test_controller_figures_replace_the_step_figures_until_the_next_step():
    console, buffer = terminal(80)
    with ProgressReporter("search", console=console) as reporter:
        drive(reporter, 5)
        reporter({"kind": "controller", "controller_step": 33, "controller_updates": 30,
                  "reward": 0.5, "valid_acc": 0.25})
        assert reporter._display.figures == "controller 3/30  reward 0.500  valid 0.250"
        reporter({"kind": "step", "step": 6, "loss": 1.0})
        assert reporter._display.figures == "loss 1.000"  # not the controller's figures


def test_plain_lines_carry_elapsed_time_and_eta():
    buffer = StringIO()
    with ProgressReporter("train-final", console=Console(file=buffer, width=40)) as reporter:
        assert not reporter.live  # not a terminal: plain lines
        reporter({**START, "epochs": 10, "steps_per_epoch": 10, "total_steps": 100})
        time.sleep(0.05)
        for step in range(1, 11):
            reporter({"kind": "tick", "step": step})  # prints nothing
        reporter({"kind": "step", "step": 10, "loss": 2.5})
        reporter({"kind": "epoch", "epoch": 1, "step": 10, "test_accuracy": 0.5})
        reporter({"kind": "checkpoint", "name": "last.pt", "epoch": 1, "step": 10})  # not shown
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "train-final: 10 epochs, 100 steps on cuda:0"
    assert re.fullmatch(r"train-final: step 10/100  0:00:00 eta 0:00:0\d  loss 2\.500", lines[1])
    assert re.fullmatch(r"train-final: epoch 1/10  0:00:00 eta 0:00:0\d  test 0\.5000", lines[2])
    assert len(lines) == 3


def test_the_eta_is_unknown_before_the_first_step_and_zero_at_the_end():
    assert eta_seconds(10.0, 0, 0, 100) is None
    assert eta_seconds(10.0, 50, 0, 100) == pytest.approx(10.0)
    assert eta_seconds(10.0, 60, 50, 100) == pytest.approx(40.0)  # 10 steps since a resume at 50
    assert eta_seconds(10.0, 100, 0, 100) == 0.0
    assert (clock(None), clock(3725.9)) == ("-:--:--", "1:02:05")
