#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    from django.core.management import execute_from_command_line

    if os.environ["DJANGO_SETTINGS_MODULE"].endswith(".production"):
        execute_from_command_line(sys.argv)
        return
    # Development: the running `make run` stack's services, else the embedded PostgreSQL.
    from creditledger.devstack import command_environment

    with command_environment() as env:
        os.environ.update(env)
        execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
