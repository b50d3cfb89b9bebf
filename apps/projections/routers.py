from django.conf import settings

READ_ALIAS = "read"


class ProjectionRouter:
    """Projections live on the `read` alias; everything else on `default`.

    When `read` is the default database (no READ_DATABASE_URL), every table is migrated
    through `default` and nothing through `read`; otherwise each alias gets its own tables.
    """

    def db_for_read(self, model, **hints):
        return READ_ALIAS if model._meta.app_label == "projections" else None

    db_for_write = db_for_read

    def allow_relation(self, obj1, obj2, **hints):
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if settings.READ_DATABASE_IS_DEFAULT:
            return db == "default"
        return (db == READ_ALIAS) == (app_label == "projections")
