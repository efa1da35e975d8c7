from eosin.cli._main import entry

entry()
