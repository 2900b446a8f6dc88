/* ops_registry: op tables (ops_table_select specs, TLB_BACKEND), introspection. */
#include <criterion/criterion.h>

#include <math.h>
#include <stddef.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op_testing.h"
#include "ops/ops.h"

/* The table under test (each test is its own process under Criterion). */
static op_table t;

static void restore_automatic(void)
{
    unsetenv("TLB_BACKEND");
    tlb_error err;
    ops_table_select(&t, NULL, &err);
}

static void start_automatic(void) { restore_automatic(); }

TestSuite(ops_registry, .init = start_automatic, .fini = restore_automatic);

/* Where each op's chosen implementation lives in an op_table. */
static const struct {
    const char *name;
    size_t offset;
    size_t size;
} table_slots[] = {
#define TABLE_SLOT(name, ...) {#name, offsetof(op_table, name), sizeof(name##_op)},
    TLB_OP_LIST(TABLE_SLOT)
#undef TABLE_SLOT
};

/* t holds exactly ops_impl(op, t.backend[op]). */
static void expect_table_consistent(const char *when)
{
    for (int op = 0; op < ops_count(); op++) {
        const tlb_backend b = t.backend[op];
        const void *impl = ops_impl(op, b);
        cr_expect_not_null(impl, "%s: op %s chose backend %s, which lacks it", when,
                           ops_name(op), backend_name(b));
        cr_expect(backend_supported(b), "%s: op %s chose unsupported backend %s", when,
                  ops_name(op), backend_name(b));
        int found = 0;
        for (size_t i = 0; i < sizeof table_slots / sizeof table_slots[0]; i++) {
            if (strcmp(table_slots[i].name, ops_name(op)) != 0) continue;
            found = 1;
            if (impl)
                cr_expect(memcmp((const char *)&t + table_slots[i].offset, impl, table_slots[i].size) == 0,
                          "%s: slot %s is not the %s implementation", when, ops_name(op),
                          backend_name(b));
        }
        cr_expect(found, "op %s has no slot in this test's table", ops_name(op));
    }
}

Test(ops_registry, introspection)
{
    cr_expect_geq(ops_count(), 10);
    for (int op = 0; op < ops_count(); op++) {
        cr_expect_not_null(ops_name(op));
        cr_expect_eq(ops_find(ops_name(op)), op, "ops_find(\"%s\")", ops_name(op));
    }
    cr_expect_eq(ops_find("nosuchop"), -1);
    cr_expect_null(ops_name(-1));
    cr_expect_null(ops_name(ops_count()));
    cr_expect_null(ops_impl(-1, TLB_BACKEND_REF));
    cr_expect_null(ops_impl(ops_count(), TLB_BACKEND_REF));
    cr_expect_null(ops_impl(0, TLB_BACKEND_COUNT));
    cr_expect(backend_supported(TLB_BACKEND_REF));
    cr_expect_str_eq(backend_name(TLB_BACKEND_REF), "ref");
    cr_expect_str_eq(backend_name(TLB_BACKEND_AVX2), "avx2");
    cr_expect_str_eq(backend_name(TLB_BACKEND_AVX512), "avx512");
    cr_expect_str_eq(backend_name(TLB_BACKEND_DNNL), "dnnl");
    expect_table_consistent("automatic choice");
}

Test(ops_registry, select_ref_forces_every_op)
{
    tlb_error err = {0};
    cr_assert_eq(ops_table_select(&t, "ref", &err), 0, "%s", err.msg);
    for (int op = 0; op < ops_count(); op++)
        cr_expect_eq(t.backend[op], TLB_BACKEND_REF, "op %s is on %s after \"ref\"",
                     ops_name(op), backend_name(t.backend[op]));
    expect_table_consistent("after ops_table_select(&t, \"ref\")");
}

Test(ops_registry, select_one_op)
{
    tlb_backend automatic[64];
    for (int op = 0; op < ops_count(); op++) automatic[op] = t.backend[op];
    tlb_error err = {0};
    cr_assert_eq(ops_table_select(&t, "dense:ref", &err), 0, "%s", err.msg);
    for (int op = 0; op < ops_count(); op++) {
        const tlb_backend want = strcmp(ops_name(op), "dense") == 0 ? TLB_BACKEND_REF : automatic[op];
        cr_expect_eq(t.backend[op], want, "after \"dense:ref\": op %s on %s, expected %s",
                     ops_name(op), backend_name(t.backend[op]), backend_name(want));
    }
    expect_table_consistent("after \"dense:ref\"");
    /* A backend-wide choice mixed with per-op ones, later entries winning. */
    cr_assert_eq(ops_table_select(&t, "ref,gelu:ref,attention:ref", &err), 0, "%s", err.msg);
    for (int op = 0; op < ops_count(); op++) cr_expect_eq(t.backend[op], TLB_BACKEND_REF);
}

/* Each supported backend name selects it for every op it implements and keeps
 * the automatic choice for the rest. */
Test(ops_registry, select_each_supported_backend)
{
    tlb_backend automatic[64];
    for (int op = 0; op < ops_count(); op++) automatic[op] = t.backend[op];
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        tlb_error err = {0};
        const char *name = backend_name((tlb_backend)b);
        if (!backend_supported((tlb_backend)b)) {
            cr_expect_eq(ops_table_select(&t, name, &err), -1, "unsupported backend %s accepted", name);
            cr_expect(strstr(err.msg, name) != NULL, "error does not name %s: %s", name, err.msg);
            continue;
        }
        cr_assert_eq(ops_table_select(&t, name, &err), 0, "\"%s\": %s", name, err.msg);
        for (int op = 0; op < ops_count(); op++) {
            const tlb_backend want = ops_impl(op, (tlb_backend)b) ? (tlb_backend)b : automatic[op];
            cr_expect_eq(t.backend[op], want, "after \"%s\": op %s on %s, expected %s", name,
                         ops_name(op), backend_name(t.backend[op]), backend_name(want));
            if (ops_impl(op, (tlb_backend)b))
                cr_expect_eq(ops_table_force(&t, op, (tlb_backend)b), 0);
            else
                cr_expect_eq(ops_table_force(&t, op, (tlb_backend)b), -1, "ops_table_force(&t, %s, %s) accepted",
                             ops_name(op), name);
        }
        expect_table_consistent(name);
    }
}

Test(ops_registry, errors_name_the_culprit)
{
    static const struct {
        const char *spec, *named;
    } bad[] = {
        {"bogus", "bogus"},
        {"dense:bogus", "bogus"},
        {"nosuchop:ref", "nosuchop"},
        {"ref,gelu:avx3", "avx3"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tlb_error err = {0};
        cr_expect_eq(ops_table_select(&t, bad[i].spec, &err), -1, "spec \"%s\" accepted", bad[i].spec);
        cr_expect(strstr(err.msg, bad[i].named) != NULL,
                  "error for \"%s\" does not name '%s': %s", bad[i].spec, bad[i].named, err.msg);
    }
}

Test(ops_registry, environment_overrides)
{
    tlb_error err = {0};
    cr_assert_eq(setenv("TLB_BACKEND", "ref", 1), 0);
    cr_assert_eq(ops_table_select(&t, NULL, &err), 0, "%s", err.msg);
    for (int op = 0; op < ops_count(); op++)
        cr_expect_eq(t.backend[op], TLB_BACKEND_REF, "TLB_BACKEND=ref: op %s on %s",
                     ops_name(op), backend_name(t.backend[op]));
    /* the environment is applied after the spec, so it wins */
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        if (!backend_supported((tlb_backend)b)) continue;
        cr_assert_eq(ops_table_select(&t, backend_name((tlb_backend)b), &err), 0, "%s", err.msg);
        for (int op = 0; op < ops_count(); op++)
            cr_expect_eq(t.backend[op], TLB_BACKEND_REF, "spec %s, TLB_BACKEND=ref: op %s on %s",
                         backend_name((tlb_backend)b), ops_name(op),
                         backend_name(t.backend[op]));
    }
    cr_assert_eq(setenv("TLB_BACKEND", "dense:bogus", 1), 0);
    cr_expect_eq(ops_table_select(&t, NULL, &err), -1, "TLB_BACKEND=dense:bogus accepted");
    cr_expect(strstr(err.msg, "TLB_BACKEND") && strstr(err.msg, "bogus"),
              "error does not name the variable and the value: %s", err.msg);
    unsetenv("TLB_BACKEND");
    cr_assert_eq(ops_table_select(&t, NULL, &err), 0, "%s", err.msg);
    expect_table_consistent("after unsetenv");
}
