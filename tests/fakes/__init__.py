"""Local fakes of the systems halodb integrates with (Graph, directories), for tests."""
