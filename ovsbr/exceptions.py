"""Errors that reach an operator: each says what is wrong and what is allowed."""


class OvsbrError(Exception):
    """Base of every error ovsbr reports to an operator as one line."""


class ConfigError(OvsbrError):
    """A configuration option has a value the agent cannot run with."""

    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")
        self.option = option


class StoreError(OvsbrError):
    """The desired-state store cannot be read or written."""


class DriverError(OvsbrError):
    """The datapath refused an operation; the reason is kept for `ovsbr status`."""


class FeatureMissing(DriverError):
    """The host lacks a kernel or datapath feature a network needs."""


class PartialFailure(DriverError):
    """Some operations of a batch failed; ``errors`` maps device -> reason."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{dev}: {why}" for dev, why in sorted(errors.items())))
        self.errors = errors
