"""Errors raised by the model registry and by prediction."""


class ModelUnavailable(Exception):
    """No usable model could be loaded. The message names the model and the reason."""


class InvalidFeatures(ValueError):
    """A row of features failed validation.

    Attributes:
        feature: Name of the offending feature, as the metadata spells it, or
            None when the row as a whole is invalid.
        reason: What is wrong, as a sentence.
        row: Index of the offending row in a batch, when there is one.
    """

    def __init__(
        self, feature: str | None, reason: str, row: int | None = None
    ) -> None:
        super().__init__(f"{feature}: {reason}" if feature else reason)
        self.feature = feature
        self.reason = reason
        self.row = row
