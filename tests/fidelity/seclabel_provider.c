/*
 * A security label provider for tests, named "tether_test", that accepts any label.
 *
 * PostgreSQL refuses SECURITY LABEL for a provider that is not loaded; the fidelity tests load this one
 * (shared_preload_libraries) on the servers that should keep labels, and leave it out where a copy must
 * skip and list them. Modelled on PostgreSQL's src/test/modules/dummy_seclabel.
 */
#include "postgres.h"

#include "commands/seclabel.h"
#include "fmgr.h"

PG_MODULE_MAGIC;

void _PG_init(void);

static void
accept_any_label(const ObjectAddress *object, const char *seclabel)
{
}

void
_PG_init(void)
{
	register_label_provider("tether_test", accept_any_label);
}
