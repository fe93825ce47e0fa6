"""One typed Settings object read from the environment and validated at start.

Every field's environment variable is its name in upper case, and its description is
its documentation (docs/reference/settings.md is generated from them). Invalid values
stop the start with a message naming the variable and never echoing a secret.

The fields live in one module per concern (contract, store_details, core, transfer,
reliability, policy, storage), joined in model.py; parsing.py holds the string forms'
parsers, loading.py reads the environment. Import everything from here.
"""

# ApiKey, parse_api_keys and parse_duration are re-exported: callers import them from here.
from workers.api_keys import ApiKey as ApiKey
from workers.api_keys import parse_api_keys as parse_api_keys
from workers.settings.loading import SECONDARY_PREFIX as SECONDARY_PREFIX
from workers.settings.loading import describe_validation_error as describe_validation_error
from workers.settings.loading import get_settings as get_settings
from workers.settings.loading import load_prefixed_settings as load_prefixed_settings
from workers.settings.loading import load_settings as load_settings
from workers.settings.loading import secondary_settings as secondary_settings
from workers.settings.model import Settings as Settings
from workers.settings.parsing import STORAGE_RULES as STORAGE_RULES
from workers.settings.parsing import MiB as MiB
from workers.settings.parsing import StoreType as StoreType
from workers.settings.parsing import check_classes as check_classes
from workers.settings.parsing import check_growth_factor as check_growth_factor
from workers.settings.parsing import parse_file_mode as parse_file_mode
from workers.settings.parsing import parse_size as parse_size
from workers.settings.parsing import parse_storage_classes as parse_storage_classes
from workers.settings.parsing import parse_storage_prices as parse_storage_prices
from workers.timestamps import parse_duration as parse_duration
