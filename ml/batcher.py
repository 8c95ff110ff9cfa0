"""One model call for the one-row predictions of an event-loop turn."""

import asyncio
from collections.abc import Callable, Mapping

from ml.predict import Prediction, predict_valid_rows, validate_row
from ml.registry import LoadedModel

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
    Each row is checked on its own before it joins, so bad input fails its
    own request only, and every batch contains rows of one model version.

    Attributes:
        calls: Model calls made so far.
        rows: Rows predicted so far; `rows / calls` is the mean batch.
        observe: Called with the number of rows of each model call.
    """

    def __init__(self, loaded: LoadedModel) -> None:
        self._loaded = loaded
        self._open: _Batch | None = None
        self.calls = 0
        self.rows = 0
        self.observe: Callable[[int], object] | None = None

    async def predict(self, row: Mapping[str, object]) -> Prediction:
        """Check `row`, then predict it together with the rows joining it.

        Raises:
            InvalidFeatures: The row is invalid.
        """
        values = validate_row(self._loaded.metadata, row)
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
        self.calls += 1
        self.rows += len(batch.rows)
        if self.observe is not None:
            self.observe(len(batch.rows))
        try:
            predictions = predict_valid_rows(self._loaded, batch.rows)
        except Exception as error:  # noqa: BLE001 - each waiting request gets it
            for future in batch.waiting:
                if not future.done():
                    future.set_exception(error)
            return
        for future, prediction in zip(batch.waiting, predictions, strict=True):
            # A request cancelled meanwhile, by its time limit, gets nothing.
            if not future.done():
                future.set_result(prediction)
