"""Progress that stays visible when stderr is a pipe or a log file."""

from __future__ import annotations

import io
import re

from actlab.progress import Progress


def test_plain_lines_in_a_pipe_at_most_every_interval_and_at_the_end():
    stream = io.StringIO()  # not a terminal
    progress = Progress(10, desc="run", unit="epoch", interval=3600, stream=stream)
    for epoch in range(10):
        progress.update(1, test=f"{epoch / 10:.1f}")
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines == [lines[-1]] and re.fullmatch(r"run: epoch 10/10 \(100%\), test=0\.9, 0m0\ds elapsed", lines[0])


def test_every_update_gives_a_line_when_the_interval_is_zero_and_an_interrupted_count_says_where_it_stopped():
    stream = io.StringIO()
    progress = Progress(4, desc="analyze", unit="block", initial=1, interval=0, stream=stream)
    progress.update(1)
    progress.update(1)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == ["analyze: block 2/4 (50%)", "analyze: block 3/4 (75%)",
                                                      "analyze: block 3/4 (75%)"]
    assert all("left" in line for line in lines)


def test_disabled_progress_prints_nothing():
    stream = io.StringIO()
    progress = Progress(3, desc="run", unit="epoch", enabled=False, interval=0, stream=stream)
    progress.update(3)
    progress.close()
    assert stream.getvalue() == ""
