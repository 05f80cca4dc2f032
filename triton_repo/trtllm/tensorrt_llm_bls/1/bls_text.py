"""Text bookkeeping of tensorrt_llm_bls for one generated sequence: what the client saw, and stop strings.

Pure Python: no Triton imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def find_stop(text: str, stop_words: list[str], start: int) -> int | None:
    """End (exclusive) of the earliest stop string in text[start:], or None."""
    best: tuple[int, int] | None = None
    for word in stop_words:
        index = text.find(word, start)
        if index != -1 and (best is None or index < best[0]):
            best = (index, index + len(word))
    return None if best is None else best[1]


@dataclass
class SequenceText:
    """One sequence (batch item x returned sequence) of a request, over all of its responses.

    `cumulative` says whether each response's text is the whole text so far (BLS accumulate_tokens, beam search)
    or only the new part (plain streaming). Either way the client receives text in the same form, cut just
    after the first stop string, which is kept like NVIDIA's BLS keeps it (the gateway trims it).
    """

    cumulative: bool
    stop_words: list[str]
    tokens: list[int] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    stopped: list[bool] = field(default_factory=list)

    def update(self, beam_texts: list[str], generation_start: int = 0) -> list[str]:
        """The text to send for each beam of a new response; marks beams that hit a stop string."""
        if not self.seen:
            self.seen = [""] * len(beam_texts)
            self.stopped = [False] * len(beam_texts)
        out: list[str] = []
        for beam, text in enumerate(beam_texts):
            if self.stopped[beam]:
                out.append("")
                continue
            previous = self.seen[beam]
            full = text if self.cumulative else previous + text
            # Search all generated text each time: in cumulative mode the tail may change (U+FFFD -> char).
            cut = find_stop(full, self.stop_words, generation_start) if self.stop_words else None
            if cut is not None:
                full = full[:cut]
                self.stopped[beam] = True
            self.seen[beam] = full
            out.append(full if self.cumulative else full[len(previous) :])
        return out

    @property
    def finished(self) -> bool:
        """Every beam has hit a stop string."""
        return bool(self.stopped) and all(self.stopped)
