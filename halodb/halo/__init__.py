"""The built-in API: Halo's tables and set-based repositories that follow Halo's write rules.

All knowledge of Halo table and column names lives in this package.
"""

from halodb.halo.agents import agents
from halodb.halo.assets import assets
from halodb.halo.clients import clients
from halodb.halo.sites import sites
from halodb.halo.users import users_repo

#: Repositories by the entity name integrations and appsettings.json use.
REPOSITORIES = {"Clients": clients, "Sites": sites, "Users": users_repo, "Assets": assets, "Agents": agents}

__all__ = ["REPOSITORIES"]
