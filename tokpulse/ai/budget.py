"""Budget guard: month-to-date spend from the ledger against MONTHLY_BUDGET.

Past the budget, non-essential paid calls are refused (`BudgetExceeded`) and essential
ones still go through; either way one `budget_exceeded` event per month goes to the
alerts outbox (deduplicated by month), for the alerting pool to deliver. Local providers
cost nothing and are never refused. The spend is re-read at most every few seconds per
process and advanced by this process's own calls in between."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime

from tokpulse.ai.errors import BudgetExceeded
from tokpulse.ai.ledger import month_to_date_spend

log = logging.getLogger(__name__)


class BudgetGuard:
    def __init__(self, budget_usd: float, *, refresh_seconds: float = 5.0):
        self.budget = float(budget_usd)
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._spent: float | None = None
        self._read_at = 0.0
        self._month = ""
        self._alerted_month = ""

    def spent(self) -> float:
        month = datetime.now(UTC).strftime("%Y-%m")
        with self._lock:
            fresh = time.monotonic() - self._read_at < self.refresh_seconds and self._month == month
            if fresh and self._spent is not None:
                return self._spent
        from workers import db

        with db.transaction() as cur:
            value = month_to_date_spend(cur)
        with self._lock:
            self._spent, self._read_at, self._month = value, time.monotonic(), month
        return value

    def add(self, cost: float) -> None:
        """Count this process's own spend until the next read."""
        if cost:
            with self._lock:
                if self._spent is not None:
                    self._spent += cost

    def check(self, *, caller: str, provider: str, model: str, essential: bool) -> None:
        """Raise `BudgetExceeded` for a non-essential paid call once the month's budget is spent."""
        if provider in ("local", "deterministic-analyzer"):
            return
        spent = self.spent()
        if spent < self.budget:
            return
        self._alert(spent)
        if not essential:
            raise BudgetExceeded(spent, self.budget, caller, model)

    def _alert(self, spent: float) -> None:
        month = datetime.now(UTC).strftime("%Y-%m")
        if self._alerted_month == month:
            return
        from workers import db

        body = (
            f"Month-to-date AI spend is ${spent:.2f}, past the monthly budget of ${self.budget:.2f} "
            "(MONTHLY_BUDGET). Non-essential AI calls are refused until the month ends or the budget is "
            "raised; essential calls continue. See `tokpulse usage` for the breakdown by model."
        )
        try:
            with db.transaction() as cur:
                cur.execute(
                    """
                    INSERT INTO alerts_outbox (dedup_key, kind, channel, severity, title, body, payload)
                    VALUES (%s, 'budget_exceeded', 'github_discussion', 'high', %s, %s, %s::jsonb)
                    ON CONFLICT (dedup_key) DO NOTHING
                    """,
                    (
                        f"ai_budget_exceeded:{month}",
                        f"AI budget exceeded for {month}",
                        body,
                        json.dumps({"month": month, "spent_usd": round(spent, 4), "budget_usd": self.budget}),
                    ),
                )
            self._alerted_month = month
        except Exception as exc:  # noqa: BLE001 - the refusal itself must still happen
            log.error("ai budget: could not record the budget_exceeded event: %s", type(exc).__name__)
