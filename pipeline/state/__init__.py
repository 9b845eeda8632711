"""Job state: models (pipeline.state.models) and the one module that changes them (store)."""
