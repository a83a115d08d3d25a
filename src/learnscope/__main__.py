from learnscope.cli import entry

entry()
