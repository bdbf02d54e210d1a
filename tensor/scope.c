#include "tensor/scope.h"

#include "tensor/error.h"

#define MAX_SCOPES 64

static _Thread_local scope scopes[MAX_SCOPES];
static _Thread_local int n_scopes;

int scope_begin(void) {
    PETAL_CHECK(n_scopes < MAX_SCOPES, "scope_begin: more than %d nested scopes", MAX_SCOPES);
    scopes[n_scopes] = (scope){.head = NULL, .depth = n_scopes};
    return ++n_scopes;
}

static void link_into(scope *s, tensor *t) {
    t->owner = s;
    t->scope_prev = NULL;
    t->scope_next = s->head;
    if (s->head) s->head->scope_prev = t;
    s->head = t;
}

void scope_register(tensor *t) {
    if (n_scopes > 0) link_into(&scopes[n_scopes - 1], t);
}

void scope_unlink(tensor *t) {
    scope *s = t->owner;
    if (!s) return;
    if (t->scope_prev)
        t->scope_prev->scope_next = t->scope_next;
    else
        s->head = t->scope_next;
    if (t->scope_next) t->scope_next->scope_prev = t->scope_prev;
    t->owner = NULL;
    t->scope_prev = t->scope_next = NULL;
}

void scope_end(int mark) {
    PETAL_CHECK(mark == n_scopes && mark > 0,
                "scope_end(%d): the innermost open scope is %d (scopes must end in reverse order)",
                mark, n_scopes);
    scope *s = &scopes[n_scopes - 1];
    while (s->head) tensor_free(s->head); // tensor_free unlinks the head
    n_scopes--;
}

tensor *scope_escape(tensor *t) {
    PETAL_CHECK(t->owner != NULL, "scope_escape: the tensor is not owned by a scope");
    int depth = t->owner->depth;
    scope_unlink(t);
    if (depth > 0) link_into(&scopes[depth - 1], t);
    return t;
}

int scope_depth(void) {
    return n_scopes;
}

int64_t scope_count(void) {
    if (n_scopes == 0) return 0;
    int64_t n = 0;
    for (tensor *t = scopes[n_scopes - 1].head; t; t = t->scope_next) n++;
    return n;
}
