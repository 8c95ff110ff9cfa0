"""One model call for concurrent one-row predictions."""

import asyncio
import dataclasses
import logging
import math

import catboost
import pytest

from ml.batcher import MAX_JOINED_ROWS, RowBatcher
from ml.errors import InvalidFeatures
from ml.predict import Prediction, predict_rows, validate_row
from ml.registry import LoadedModel
from ml.train import load_training_frame

FEATURES = ("island", "sex", "bill_length_mm", "bill_depth_mm", "flipper_length_mm")


def penguin_rows(count: int) -> list[dict[str, object]]:
    frame = load_training_frame().head(count)
    rows = []
    for record in frame.to_dict("records"):
        rows.append(
            {
                name: record[name]
                for name in FEATURES
                if record[name] != "missing"
                and not (isinstance(record[name], float) and math.isnan(record[name]))
            }
        )
    return rows


def assert_same(joined: Prediction, alone: Prediction) -> None:
    assert joined.label == alone.label
    assert joined.values == alone.values
    assert joined.probabilities == pytest.approx(alone.probabilities, abs=1e-12)


async def predict_together(
    batcher: RowBatcher, rows: list[dict[str, object]]
) -> list[Prediction | BaseException]:
    return await asyncio.gather(
        *(batcher.predict(row) for row in rows), return_exceptions=True
    )


def test_concurrent_rows_share_one_call(loaded_model: LoadedModel):
    batcher = RowBatcher(loaded_model)
    rows = penguin_rows(20)

    joined = asyncio.run(predict_together(batcher, rows))

    assert (batcher.calls, batcher.rows) == (1, 20)
    for prediction, row in zip(joined, rows, strict=True):
        assert_same(prediction, predict_rows(loaded_model, [row])[0])


def test_lone_row_gets_its_own_call(loaded_model: LoadedModel):
    batcher = RowBatcher(loaded_model)
    row = {"island": "Dream", "bill_length_mm": 49.0}

    first = asyncio.run(batcher.predict(row))
    second = asyncio.run(batcher.predict(row))

    # Each event loop gets its own batches.
    assert (batcher.calls, batcher.rows) == (2, 2)
    assert_same(first, predict_rows(loaded_model, [row])[0])
    assert_same(second, first)


def test_bad_row_fails_only_its_own_request(loaded_model: LoadedModel):
    batcher = RowBatcher(loaded_model)
    rows = penguin_rows(3)
    rows.insert(1, {"island": "Mars"})

    results = asyncio.run(predict_together(batcher, rows))

    assert isinstance(results[1], InvalidFeatures)
    assert results[1].feature == "island"
    assert (batcher.calls, batcher.rows) == (1, 3)
    for index in (0, 2, 3):
        assert_same(results[index], predict_rows(loaded_model, [rows[index]])[0])


def test_batches_are_bounded(loaded_model: LoadedModel):
    batcher = RowBatcher(loaded_model)
    rows = penguin_rows(MAX_JOINED_ROWS * 2 + 5)

    results = asyncio.run(predict_together(batcher, rows))

    assert (batcher.calls, batcher.rows) == (3, len(rows))
    expected = predict_rows(loaded_model, rows)
    for prediction, alone in zip(results, expected, strict=True):
        assert_same(prediction, alone)


def test_each_version_predicts_its_own_rows(
    loaded_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory
):
    from ml.registry import load_latest
    from ml.train import MODEL_NAME, train_penguins

    folder = tmp_path_factory.mktemp("small-model")
    train_penguins(folder, iterations=5)
    small = load_latest(folder, MODEL_NAME)
    rows = penguin_rows(6)

    large_batcher, small_batcher = RowBatcher(loaded_model), RowBatcher(small)

    async def both() -> list[Prediction]:
        return await asyncio.gather(
            *(
                (large_batcher if index % 2 else small_batcher).predict(row)
                for index, row in enumerate(rows)
            )
        )

    results = asyncio.run(both())

    assert (large_batcher.calls, small_batcher.calls) == (1, 1)
    for index, (prediction, row) in enumerate(zip(results, rows, strict=True)):
        model = loaded_model if index % 2 else small
        assert_same(prediction, predict_rows(model, [row])[0])
        # The versions predict differently, so a mixed batch would show.
        other = small if index % 2 else loaded_model
        assert predict_rows(other, [row])[0].probabilities != pytest.approx(
            prediction.probabilities, abs=1e-6
        )


def test_failed_call_fails_every_waiting_request(loaded_model: LoadedModel):
    # CatBoost itself raises for a model object with no trees.
    untrained = LoadedModel(
        metadata=loaded_model.metadata,
        model=catboost.CatBoostClassifier(),
        directory=loaded_model.directory,
    )
    batcher = RowBatcher(untrained)
    rows = penguin_rows(4)

    results = asyncio.run(predict_together(batcher, rows))

    assert all(isinstance(result, catboost.CatBoostError) for result in results)
    # Each request gets the error of its own row's call.
    assert len({id(result) for result in results}) == 4
    # The joined call, then each row alone.
    assert batcher.calls == 5
    # The next turn starts a new batch.
    with pytest.raises(catboost.CatBoostError):
        asyncio.run(batcher.predict(rows[0]))
    assert batcher.calls == 6


def test_cancelled_request_leaves_others_served(loaded_model: LoadedModel):
    batcher = RowBatcher(loaded_model)
    rows = penguin_rows(3)

    async def cancel_one() -> list[Prediction | BaseException]:
        tasks = [asyncio.create_task(batcher.predict(row)) for row in rows]
        # Let every task hand in its row, then cancel one before the call.
        await asyncio.sleep(0)
        tasks[1].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(cancel_one())

    assert isinstance(results[1], asyncio.CancelledError)
    # The cancelled request's row is left out of the call.
    assert (batcher.calls, batcher.rows) == (1, 2)
    for index in (0, 2):
        assert_same(results[index], predict_rows(loaded_model, [rows[index]])[0])


def test_all_cancelled_requests_make_no_call(loaded_model: LoadedModel):
    batcher = RowBatcher(loaded_model)
    rows = penguin_rows(4)

    async def cancel_all() -> None:
        tasks = [asyncio.create_task(batcher.predict(row)) for row in rows]
        await asyncio.sleep(0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # One more turn, in which the call would run.
        await asyncio.sleep(0)

    asyncio.run(cancel_all())

    assert (batcher.calls, batcher.rows) == (0, 0)


def test_failing_observer_is_dropped_and_logged(
    loaded_model: LoadedModel, caplog: pytest.LogCaptureFixture
):
    seen: list[int] = []

    def observe(rows: int) -> None:
        seen.append(rows)
        raise OSError("metrics folder not writable")

    batcher = RowBatcher(loaded_model, observe=observe)
    rows = penguin_rows(3)

    with caplog.at_level(logging.ERROR, logger="ml.batcher"):
        first = asyncio.run(predict_together(batcher, rows))
        second = asyncio.run(predict_together(batcher, rows))

    assert seen == [3]
    assert batcher.observe is None
    for prediction, row in zip(first + second, rows + rows, strict=True):
        assert_same(prediction, predict_rows(loaded_model, [row])[0])
    assert len(caplog.records) == 1
    assert "no longer counted" in caplog.records[0].getMessage()


def test_row_breaking_a_joined_call_fails_alone(loaded_model: LoadedModel):
    # `sex` passes unseen values to CatBoost, as an imported model may ask.
    features = tuple(
        dataclasses.replace(spec, unseen="model", categories=())
        if spec.name == "sex"
        else spec
        for spec in loaded_model.metadata.features
    )
    loaded = LoadedModel(
        metadata=dataclasses.replace(loaded_model.metadata, features=features),
        model=loaded_model.model,
        directory=loaded_model.directory,
    )
    batcher = RowBatcher(loaded)
    good = validate_row(loaded.metadata, {"island": "Dream", "sex": "male"})
    # validate_row rejects a lone surrogate, so this row goes to the call
    # directly: CatBoost cannot encode it and fails the whole call.
    bad = [*good[:1], "\udcff", *good[2:]]

    async def call() -> list[asyncio.Future[Prediction]]:
        loop = asyncio.get_running_loop()
        waiting = [loop.create_future() for _ in range(3)]
        batcher._call([good, bad, good], waiting)
        return waiting

    waiting = asyncio.run(call())

    # The joined call, then each row alone.
    assert (batcher.calls, batcher.rows) == (4, 6)
    assert waiting[1].exception() is not None
    for index in (0, 2):
        assert (
            waiting[index].result().label
            == predict_rows(loaded_model, [{"island": "Dream", "sex": "male"}])[0].label
        )
