from halodb.sync.engine import Limits, SyncEngine
from tests.helpers import ListSource, add_client_with_site, halo_users, user_records, users_entity


def test_first_load_then_nothing_changes(halo):
    _, site_id = add_client_with_site(halo)
    source = ListSource(user_records(5, site_id))
    eng = SyncEngine(halo, instance="t", agent_id=2, limits=Limits(batch_size=2))
    first = eng.run(users_entity(source))
    assert (first.status, first.created, first.fetched) == ("ok", 5, 5), first.error
    second = eng.run(users_entity(source))
    assert (second.created, second.updated, second.unchanged) == (0, 0, 5)
    assert len(halo_users(halo)) == 5
