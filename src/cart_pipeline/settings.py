"""Project settings (Kedro defaults apart from the hooks)."""

from cart_pipeline.hooks import MlflowSaveVersionHook, TorchThreadsHook

HOOKS = (TorchThreadsHook(), MlflowSaveVersionHook())

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
