from tests.fakes.graph_fixtures import fake_graph, fake_graph_server  # noqa: F401
