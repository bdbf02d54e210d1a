#include "autograd/graph_dot.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/error.h"

// ---- a pointer -> id map (open addressing), so shared nodes and leaves appear once ----

typedef struct {
    const void **keys; // (cap) NULL marks a free slot
    int *ids;          // (cap)
    size_t cap, n;
} ptr_map;

static size_t ptr_slot(const ptr_map *m, const void *key) {
    size_t h = (size_t)((uintptr_t)key * 0x9E3779B97F4A7C15ull) & (m->cap - 1);
    while (m->keys[h] && m->keys[h] != key) h = (h + 1) & (m->cap - 1);
    return h;
}

static void ptr_map_grow(ptr_map *m) {
    size_t cap = m->cap ? 2 * m->cap : 64;
    ptr_map bigger = {calloc(cap, sizeof(void *)), malloc(cap * sizeof(int)), cap, 0};
    PETAL_CHECK(bigger.keys && bigger.ids, "ag_graph_dot: out of host memory");
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        size_t h = ptr_slot(&bigger, m->keys[i]);
        bigger.keys[h] = m->keys[i];
        bigger.ids[h] = m->ids[i];
        bigger.n++;
    }
    free(m->keys);
    free(m->ids);
    *m = bigger;
}

// The id of key, or -1 after giving it `id` when it was not in the map yet.
static int ptr_map_put(ptr_map *m, const void *key, int id) {
    if (2 * (m->n + 1) > m->cap) ptr_map_grow(m);
    size_t h = ptr_slot(m, key);
    if (m->keys[h]) return m->ids[h];
    m->keys[h] = key;
    m->ids[h] = id;
    m->n++;
    return -1;
}

static void ptr_map_free(ptr_map *m) {
    free(m->keys);
    free(m->ids);
}

// ---- collecting the nodes ----

static int by_seq(const void *a, const void *b) {
    uint64_t x = (*(ag_node *const *)a)->seq, y = (*(ag_node *const *)b)->seq;
    return x < y ? -1 : (x > y ? 1 : 0);
}

// Every node reachable from root, oldest first. Does not touch the nodes' traversal epochs, so
// it may run between (or during) backward passes.
static ag_node **collect_nodes(ag_node *root, size_t *count) {
    ptr_map seen = {0};
    size_t n = 0, cap = 64;
    ag_node **nodes = malloc(cap * sizeof *nodes);
    PETAL_CHECK(nodes != NULL, "ag_graph_dot: out of host memory");
    ptr_map_put(&seen, root, 0);
    nodes[n++] = root;
    for (size_t next = 0; next < n; next++) { // the array doubles as the BFS queue
        for (int i = 0; i < nodes[next]->n_in; i++) {
            ag_node *p = nodes[next]->in[i].node;
            if (!p || ptr_map_put(&seen, p, 0) >= 0) continue;
            if (n == cap) {
                cap *= 2;
                nodes = realloc(nodes, cap * sizeof *nodes);
                PETAL_CHECK(nodes != NULL, "ag_graph_dot: out of host memory");
            }
            nodes[n++] = p;
        }
    }
    ptr_map_free(&seen);
    qsort(nodes, n, sizeof *nodes, by_seq);
    *count = n;
    return nodes;
}

// ---- writing ----

static void write_op(FILE *out, const ag_node *n, int id) {
    char s[SHAPE_STR_MAX];
    fprintf(out, "  op%d [shape=ellipse, label=\"%s", id, n->op);
    if (n->released) fprintf(out, "\\nsaved: released");
    for (int k = 0; k < AG_MAX_SAVED; k++) {
        const tensor *t = n->saved[k];
        if (t)
            fprintf(out, "\\nsaved %d: %s %s", k, dtype_name(t->dtype),
                    shape_str(t->ndim, t->shape, s, sizeof s));
    }
    fprintf(out, "\"];\n");
}

// The DOT name of the input behind edge e (not an op) into `name`, declaring its box on first use.
static void input_name(FILE *out, const ag_edge *e, ptr_map *leaves, int *n_consts, char *name,
                       size_t size) {
    char s[SHAPE_STR_MAX];
    shape_str(e->ndim, e->shape, s, sizeof s);
    if (!e->leaf) { // needs no gradient: a box of its own for each use
        // ag_record leaves the edge of an absent optional input (a NULL bias or mask) zeroed,
        // which reads as a frozen f32 scalar: the label says it may be either.
        bool maybe_absent = e->ndim == 0 && e->dtype == PETAL_F32;
        snprintf(name, size, "const%d", (*n_consts)++);
        fprintf(out, "  %s [shape=box, color=gray, fontcolor=gray, label=\"%s %s%s\"];\n", name,
                dtype_name(e->dtype), s, maybe_absent ? "\\nor no input" : "");
        return;
    }
    int id = ptr_map_put(leaves, e->leaf, (int)leaves->n);
    snprintf(name, size, "leaf%d", id < 0 ? (int)leaves->n - 1 : id);
    if (id < 0)
        fprintf(out, "  %s [shape=box, style=bold, color=blue, label=\"%s %s\\nrequires_grad\"];\n",
                name, dtype_name(e->dtype), s);
}

static void write_edges(FILE *out, const ag_node *n, int id, const ptr_map *ops, ptr_map *leaves,
                        int *n_consts) {
    char name[32], s[SHAPE_STR_MAX];
    for (int i = 0; i < n->n_in; i++) {
        const ag_edge *e = &n->in[i];
        if (e->node)
            snprintf(name, sizeof name, "op%d", ops->ids[ptr_slot(ops, e->node)]);
        else
            input_name(out, e, leaves, n_consts, name, sizeof name);
        fprintf(out, "  %s -> op%d [label=\"%s\"%s];\n", name, id,
                shape_str(e->ndim, e->shape, s, sizeof s),
                e->needs_grad ? ", style=bold, color=blue" : ", color=gray");
    }
}

void ag_graph_dot(const tensor *root, FILE *out) {
    char s[SHAPE_STR_MAX];
    fprintf(out, "digraph autograd {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", "
                 "fontsize=10];\n  edge [fontname=\"Helvetica\", fontsize=9];\n");
    fprintf(out, "  output [shape=box, style=filled, fillcolor=lightgray, label=\"%s %s%s\"];\n",
            dtype_name(root->dtype), shape_str(root->ndim, root->shape, s, sizeof s),
            root->requires_grad && !root->grad_fn ? "\\nrequires_grad" : "");
    if (root->grad_fn) {
        size_t count;
        ag_node **nodes = collect_nodes(root->grad_fn, &count);
        ptr_map ops = {0}, leaves = {0};
        int n_consts = 0;
        for (size_t i = 0; i < count; i++) ptr_map_put(&ops, nodes[i], (int)i);
        for (size_t i = 0; i < count; i++) {
            write_op(out, nodes[i], (int)i);
            write_edges(out, nodes[i], (int)i, &ops, &leaves, &n_consts);
        }
        fprintf(out, "  op%d -> output [style=bold, color=blue];\n", (int)count - 1);
        ptr_map_free(&ops);
        ptr_map_free(&leaves);
        free(nodes);
    }
    fprintf(out, "}\n");
}

// ---- PETAL_TRACE ----

bool ag_trace_enabled(void) {
    static int enabled = -1;
    if (enabled < 0) {
        const char *v = getenv("PETAL_TRACE");
        enabled = v && *v && strcmp(v, "0") != 0;
    }
    return enabled;
}

static double l2_norm(const tensor *t) {
    int64_t n = tensor_numel(t);
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v), sum = 0;
    PETAL_CHECK(v != NULL, "PETAL_TRACE: out of host memory");
    tensor_to_doubles(t, v);
    for (int64_t i = 0; i < n; i++) sum += v[i] * v[i];
    free(v);
    return sqrt(sum);
}

void ag_trace_node(const ag_node *node, const tensor *gout, tensor *const *gin) {
    char s[SHAPE_STR_MAX];
    fprintf(stderr, "trace: %-14s out %-16s grad norms:", node->op,
            shape_str(gout->ndim, gout->shape, s, sizeof s));
    for (int i = 0; i < node->n_in; i++) {
        if (!node->in[i].needs_grad)
            fprintf(stderr, " -");
        else if (!gin[i])
            fprintf(stderr, " in place");
        else
            fprintf(stderr, " %.6e", l2_norm(gin[i]));
        if (i + 1 < node->n_in) fprintf(stderr, ",");
    }
    fprintf(stderr, "\n");
}
