"""A poller with the rules of terraform's StateChangeConf
(terraform-plugin-sdk v2 `helper/retry`, WaitForStateContext), so that tests
fail where the terraform provider would fail.

Rules, as the SDK applies them:
- The first refresh comes after `delay`, the next ones every `poll_interval`.
- A state in `target` ends the wait once it was seen
  `continuous_target_occurence` times in a row.
- A state in `pending` keeps waiting.
- Any other state raises UnexpectedStateError at once, except when `pending`
  is empty: then every state outside `target` counts as pending.
- A refresh that returns no result counts as "not found"; more than
  `not_found_checks` of them in a row raise NotFoundError.
- An error raised by the refresh function ends the wait with that error.

One rule is stricter than the SDK: an empty state raises UnexpectedStateError
even when `pending` is empty. Terraform's refresh functions read `status`
with an empty default, so an empty state means the field was missing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

Refresh = Callable[[], tuple[Any, str]]


class UnexpectedStateError(AssertionError):
    """The refresh returned a state outside the pending and target sets."""

    def __init__(self, state: str, pending: Sequence[str], target: Sequence[str], seen: list[str]):
        super().__init__(
            f"unexpected state {state!r}, wanted target {list(target)} (pending {list(pending)}); states seen: {seen}"
        )
        self.state = state
        self.seen = seen


class NotFoundError(AssertionError):
    """The refresh found no resource more often than allowed."""


class WaitTimeoutError(AssertionError):
    """The target state was not reached within the timeout."""


@dataclass
class StateChangeConf:
    """One wait: `refresh` returns (result, state), result None for "not found"."""

    pending: Sequence[str]
    target: Sequence[str]
    refresh: Refresh
    timeout: float
    delay: float = 0.0
    poll_interval: float = 0.2
    not_found_checks: int = 20
    continuous_target_occurence: int = 1
    # Distinct states in the order they were seen, filled by wait().
    seen: list[str] = field(default_factory=list)

    def wait(self) -> Any:
        """Poll until a target state; return the refresh result of that poll."""
        deadline = time.monotonic() + self.timeout
        if self.delay > 0:
            time.sleep(self.delay)
        not_found = 0
        target_count = 0
        while True:
            result, state = self.refresh()
            if result is None:
                not_found += 1
                if not_found > self.not_found_checks:
                    raise NotFoundError(f"resource not found after {not_found} checks; states seen: {self.seen}")
            else:
                not_found = 0
                if not self.seen or self.seen[-1] != state:
                    self.seen.append(state)
                if state == "":
                    raise UnexpectedStateError(state, self.pending, self.target, self.seen)
                if state in self.target:
                    target_count += 1
                    if target_count >= self.continuous_target_occurence:
                        return result
                elif state in self.pending or not self.pending:
                    target_count = 0
                else:
                    raise UnexpectedStateError(state, self.pending, self.target, self.seen)
            if time.monotonic() + self.poll_interval > deadline:
                raise WaitTimeoutError(
                    f"timeout after {self.timeout:.0f} s waiting for {list(self.target)}; states seen: {self.seen}"
                )
            time.sleep(self.poll_interval)
