"""The offline sandbox: a Twilio-compatible emulator, a simulated carrier and a
phone page, so a bot runs its real Twilio code path with no account."""

from __future__ import annotations
