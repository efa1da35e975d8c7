from eosin.cli import entry

entry()
