"""Project settings (Kedro defaults apart from the hooks)."""

from cart_pipeline.hooks import (
    InterruptedRunsHook,
    ParametersHook,
    RunJournalHook,
    RunNamesHook,
    RunScopeHook,
    TorchThreadsHook,
)

# pluggy calls the last registered first: ParametersHook checks the run before the others act,
# and RunScopeHook takes the run lock and pins versions before the journal records the run.
HOOKS = (
    TorchThreadsHook(),
    RunNamesHook(),
    InterruptedRunsHook(),
    RunJournalHook(),
    RunScopeHook(),
    ParametersHook(),
)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Parameters merge key by key (Kedro's default replaces a whole top-level group): a
    # conf/local or --env file that sets one key keeps the group's other keys, and so does
    # `--params group.key=value` when such a file exists (Kedro applies runtime params to each
    # environment's config before merging the environments).
    "merge_strategy": {"parameters": "soft"},
}
