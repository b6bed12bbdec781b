"""Project settings (Kedro defaults apart from the hooks)."""

from cart_pipeline.hooks import TorchThreadsHook

HOOKS = (TorchThreadsHook(),)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
