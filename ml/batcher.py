"""One model call for the one-row predictions of an event-loop turn."""

import asyncio
import logging
from collections.abc import Callable, Mapping

from ml.predict import Prediction, predict_valid_rows, validate_row
from ml.registry import LoadedModel

logger = logging.getLogger(__name__)

# At most this many rows go to the model in one call.
MAX_JOINED_ROWS = 64


class _Batch:
    __slots__ = ("loop", "rows", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.rows: list[list[object]] = []
        self.waiting: list[asyncio.Future[Prediction]] = []


class RowBatcher:
    """Predicts the rows of concurrent one-row requests in one model call.

    Setting up a CatBoost call costs far more than predicting a row, so the
    rows that requests hand in during one turn of the event loop go to the
    model together, on the next turn. A lone request waits that one turn.
    Each row is checked on its own before it joins, and a joined call that
    fails is made again row by row, so bad input fails its own request
    only. Rows of requests cancelled before the call are left out, and every
    batch contains rows of one model version.

    Attributes:
        model: The model version whose rows this batcher predicts.
        calls: Model calls made so far.
        rows: Rows sent to the model so far; `rows / calls` is the mean batch.
        observe: Called with the number of rows of each model call; set to
            None after it raises, which is logged.
    """

    def __init__(
        self,
        model: LoadedModel,
        observe: Callable[[int], object] | None = None,
    ) -> None:
        self.model = model
        self._open: _Batch | None = None
        self.calls = 0
        self.rows = 0
        self.observe = observe

    async def predict(self, row: Mapping[str, object]) -> Prediction:
        """Check `row`, then predict it together with the rows joining it.

        Raises:
            InvalidFeatures: The row is invalid.
        """
        values = validate_row(self.model.metadata, row)
        loop = asyncio.get_running_loop()
        batch = self._open
        if (
            batch is None
            or batch.loop is not loop
            or len(batch.rows) >= MAX_JOINED_ROWS
        ):
            batch = self._open = _Batch(loop)
            loop.call_soon(self._run, batch)
        future: asyncio.Future[Prediction] = loop.create_future()
        batch.rows.append(values)
        batch.waiting.append(future)
        return await future

    def _run(self, batch: _Batch) -> None:
        if self._open is batch:
            self._open = None
        # Requests cancelled since they handed their rows in, as by their
        # time limit, are left out.
        live = [
            (row, future)
            for row, future in zip(batch.rows, batch.waiting, strict=True)
            if not future.done()
        ]
        try:
            if live:
                self._call([row for row, _ in live], [future for _, future in live])
        finally:
            # No request may wait for ever, whatever failed above.
            for _, future in live:
                if not future.done():
                    future.set_exception(
                        RuntimeError("The model call ended without a prediction.")
                    )

    def _call(
        self, rows: list[list[object]], waiting: list[asyncio.Future[Prediction]]
    ) -> None:
        self.calls += 1
        self.rows += len(rows)
        self._observe(len(rows))
        try:
            predictions = predict_valid_rows(self.model, rows)
        except Exception as error:  # noqa: BLE001 - it goes to the request
            if len(rows) > 1:
                # A row that passed the checks can still fail the joined
                # call. Made alone, each call fails only its own request.
                for row, future in zip(rows, waiting, strict=True):
                    self._call([row], [future])
                return
            if not waiting[0].done():
                waiting[0].set_exception(error)
            return
        for future, prediction in zip(waiting, predictions, strict=True):
            if not future.done():
                future.set_result(prediction)

    def _observe(self, rows: int) -> None:
        if self.observe is None:
            return
        try:
            self.observe(rows)
        except Exception:
            metadata = self.model.metadata
            logger.exception(
                "Could not count the rows of a call to model %s version %s; "
                "its calls are no longer counted",
                metadata.name,
                metadata.version,
            )
            self.observe = None
