"""The finance desk: a web page behind a login where finance works the exceptions stagepost
quarantined (owners, due dates, ignore and undo, re-validate), reads the posting windows'
history and downloads previews and workbooks. See docs/desk.md."""
