"""``python -m mailsink``: start the SMTP sink and its HTTP viewer."""

from mailsink.server import main

# The guard matters: the writer process is spawned and re-imports this module.
if __name__ == "__main__":
    main()
