// A pattern is parsed into a small syntax tree, then compiled back to front into a Thompson NFA
// (each piece compiled with its continuation already known, so nothing is patched later).
// Matching walks a DFA whose states are sets of NFA states, built lazily: a state's successor on
// an ASCII unit is computed once and cached, other units are stepped through the NFA each time.
// A lexer tries every rule at every token, so after the first few captions matching costs a
// table lookup per unit and rule.
#include "train/caption_regex.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "io/buffer.h"
#include "tensor/error.h"

// Cached DFA states before the cache is dropped and rebuilt (about 0.6 KB each).
#define RX_MAX_DSTATES 20000

enum { RX_SET, RX_SPLIT, RX_MATCH };
enum { RX_LETTER = 1, RX_DIGIT = 2, RX_UPPER = 4 }; // the predefined classes

typedef struct {
    int32_t op;
    int32_t next, alt; // successors: next for RX_SET and RX_SPLIT, alt for RX_SPLIT
    int32_t set;       // RX_SET: the set the unit must be in
} rx_inst;

typedef struct {
    uint16_t lo, hi;
} rx_range;

typedef struct {
    bool negate;
    uint8_t classes;
    size_t first, n; // ranges[first, first + n)
} rx_set;

typedef struct {
    int32_t start;  // its first NFA instruction
    int32_t dstart; // its DFA start state, -1 until built
} rx_pattern;

typedef struct {
    size_t first;      // its NFA states: pool[first, first + n), ascending
    size_t n;          // 0: the dead state
    bool match;        // it holds the accepting instruction
    int32_t next[128]; // the state after each ASCII unit, -1 until computed
} rx_dstate;

struct rx_program {
    // the NFA
    rx_inst *insts;
    rx_set *sets;
    rx_range *ranges;
    rx_pattern *patterns;
    size_t n_insts, cap_insts, n_sets, cap_sets, n_ranges, cap_ranges, n_patterns, cap_patterns;
    // the DFA
    rx_dstate *dstates;
    int32_t *pool;  // the NFA states of every DFA state
    int32_t *index; // DFA states by their NFA states (open addressing, -1 empty)
    size_t n_dstates, cap_dstates, n_pool, cap_pool, cap_index;
    // scratch, sized to the NFA: a state list, a stack, the generation that last saw each
    // instruction (so no clearing between steps), and rx_ends' answer
    int32_t *list, *stack;
    uint32_t *seen;
    uint32_t generation;
    size_t cap_scratch;
    int64_t *ends;
    size_t cap_ends;
};

// ---- syntax tree ----

typedef enum { AST_EMPTY, AST_SET, AST_CAT, AST_ALT, AST_REPEAT } ast_kind;

typedef struct {
    ast_kind kind;
    int32_t a, b;     // children (AST_CAT, AST_ALT: both; AST_REPEAT: a)
    int32_t set;      // AST_SET
    int32_t min, max; // AST_REPEAT; max -1 for no bound
} ast_node;

typedef struct {
    rx_program *p;
    const char *pattern;
    size_t i;
    ast_node *nodes;
    size_t n_nodes, cap_nodes;
} parser;

static int32_t ast_add(parser *ps, ast_node node) {
    ps->nodes = buffer_grow(ps->nodes, &ps->cap_nodes, ps->n_nodes + 1, sizeof *ps->nodes);
    ps->nodes[ps->n_nodes] = node;
    return (int32_t)ps->n_nodes++;
}

static char peek(const parser *ps) {
    return ps->pattern[ps->i];
}

static void expect(parser *ps, char c) {
    PETAL_CHECK(peek(ps) == c, "pattern '%s': expected '%c' at offset %zu", ps->pattern, c, ps->i);
    ps->i++;
}

static void range_add(rx_program *p, uint16_t lo, uint16_t hi) {
    p->ranges = buffer_grow(p->ranges, &p->cap_ranges, p->n_ranges + 1, sizeof *p->ranges);
    p->ranges[p->n_ranges++] = (rx_range){lo, hi};
}

// A new set whose ranges are the ones added from now on.
static int32_t set_begin(rx_program *p, bool negate, uint8_t classes) {
    p->sets = buffer_grow(p->sets, &p->cap_sets, p->n_sets + 1, sizeof *p->sets);
    p->sets[p->n_sets] = (rx_set){negate, classes, p->n_ranges, 0};
    return (int32_t)p->n_sets++;
}

// Closes the set begun last and makes it a leaf of the tree.
static int32_t set_leaf(parser *ps, int32_t set) {
    ps->p->sets[set].n = ps->p->n_ranges - ps->p->sets[set].first;
    return ast_add(ps, (ast_node){.kind = AST_SET, .set = set});
}

static int hex_digit(const parser *ps, char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    PETAL_CHECK(c >= 'A' && c <= 'F', "pattern '%s': bad hex digit at offset %zu", ps->pattern,
                ps->i);
    return c - 'A' + 10;
}

static uint16_t parse_hex(parser *ps, int digits) {
    unsigned v = 0;
    for (int k = 0; k < digits; k++) v = v * 16 + (unsigned)hex_digit(ps, ps->pattern[ps->i++]);
    return (uint16_t)v;
}

// One character of the pattern, escapes decoded.
static uint16_t parse_char(parser *ps) {
    char c = ps->pattern[ps->i++];
    PETAL_CHECK(c, "pattern '%s': unexpected end", ps->pattern);
    if (c != '\\') return (unsigned char)c;
    c = ps->pattern[ps->i++];
    switch (c) {
    case 'u':
        return parse_hex(ps, 4);
    case 'x':
        return parse_hex(ps, 2);
    case 't':
        return '\t';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 'f':
        return '\f';
    case '0':
        return 0;
    default:
        PETAL_CHECK(c, "pattern '%s': '\\' at the end", ps->pattern);
        return (unsigned char)c;
    }
}

// [...] after the '['; "[^]" is any unit.
static int32_t parse_class(parser *ps) {
    bool negate = peek(ps) == '^';
    if (negate) ps->i++;
    int32_t set = set_begin(ps->p, negate, 0);
    while (peek(ps) != ']') {
        uint16_t lo = parse_char(ps), hi = lo;
        if (peek(ps) == '-' && ps->pattern[ps->i + 1] != ']') {
            ps->i++;
            hi = parse_char(ps);
        }
        PETAL_CHECK(lo <= hi, "pattern '%s': empty range before offset %zu", ps->pattern, ps->i);
        range_add(ps->p, lo, hi);
    }
    ps->i++;
    return set_leaf(ps, set);
}

// [:letter:], [:digit:] or [:uppercase:] at the parser's position, or -1 (a class like "[:;]").
static int32_t predefined_class(parser *ps) {
    static const struct {
        const char *name;
        uint8_t classes;
    } names[] = {{"[:letter:]", RX_LETTER}, {"[:digit:]", RX_DIGIT}, {"[:uppercase:]", RX_UPPER}};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        size_t n = strlen(names[k].name);
        if (strncmp(ps->pattern + ps->i, names[k].name, n) == 0) {
            ps->i += n;
            return set_leaf(ps, set_begin(ps->p, false, names[k].classes));
        }
    }
    return -1;
}

// One unit outside brackets: an ASCII letter matches both cases (%caseless).
static int32_t parse_literal(parser *ps) {
    uint16_t c = parse_char(ps);
    int32_t set = set_begin(ps->p, false, 0);
    range_add(ps->p, c, c);
    if (c < 128 && (c | 32) >= 'a' && (c | 32) <= 'z') range_add(ps->p, c ^ 32, c ^ 32);
    return set_leaf(ps, set);
}

static int32_t parse_alt(parser *ps);

static int32_t parse_atom(parser *ps) {
    char c = peek(ps);
    PETAL_CHECK(c && !strchr("*+?{|)\"/~!$", c), "pattern '%s': unexpected '%c' at offset %zu",
                ps->pattern, c, ps->i);
    if (c == '(') {
        ps->i++;
        int32_t a = parse_alt(ps);
        expect(ps, ')');
        return a;
    }
    if (c == '[') {
        int32_t a = predefined_class(ps);
        if (a >= 0) return a;
        ps->i++;
        return parse_class(ps);
    }
    if (c == '.') {
        ps->i++;
        int32_t set = set_begin(ps->p, true, 0);
        range_add(ps->p, '\n', '\n');
        return set_leaf(ps, set);
    }
    return parse_literal(ps);
}

static int parse_count(parser *ps) {
    int v = 0;
    PETAL_CHECK(peek(ps) >= '0' && peek(ps) <= '9', "pattern '%s': expected a count at offset %zu",
                ps->pattern, ps->i);
    while (peek(ps) >= '0' && peek(ps) <= '9') v = v * 10 + (ps->pattern[ps->i++] - '0');
    return v;
}

static int32_t parse_repeat(parser *ps) {
    int32_t a = parse_atom(ps);
    for (;;) {
        int min, max;
        char c = peek(ps);
        if (c == '*' || c == '+' || c == '?') {
            ps->i++;
            min = c == '+';
            max = c == '?' ? 1 : -1;
        } else if (c == '{') {
            ps->i++;
            min = max = parse_count(ps);
            if (peek(ps) == ',') {
                ps->i++;
                max = parse_count(ps);
            }
            expect(ps, '}');
        } else {
            return a;
        }
        a = ast_add(ps, (ast_node){.kind = AST_REPEAT, .a = a, .min = min, .max = max});
    }
}

static int32_t parse_cat(parser *ps) {
    int32_t a = -1;
    while (peek(ps) && peek(ps) != '|' && peek(ps) != ')') {
        int32_t b = parse_repeat(ps);
        a = a < 0 ? b : ast_add(ps, (ast_node){.kind = AST_CAT, .a = a, .b = b});
    }
    return a < 0 ? ast_add(ps, (ast_node){.kind = AST_EMPTY}) : a;
}

static int32_t parse_alt(parser *ps) {
    int32_t a = parse_cat(ps);
    while (peek(ps) == '|') {
        ps->i++;
        int32_t b = parse_cat(ps);
        a = ast_add(ps, (ast_node){.kind = AST_ALT, .a = a, .b = b});
    }
    return a;
}

// ---- compiling the syntax tree ----

static int32_t inst_add(rx_program *p, int32_t op, int32_t next, int32_t alt, int32_t set) {
    p->insts = buffer_grow(p->insts, &p->cap_insts, p->n_insts + 1, sizeof *p->insts);
    p->insts[p->n_insts] = (rx_inst){op, next, alt, set};
    return (int32_t)p->n_insts++;
}

static int32_t compile(rx_program *p, const ast_node *nodes, int32_t node, int32_t next);

// x{min,max}: min copies of x, then a loop (no bound) or max - min nested optional copies.
static int32_t compile_repeat(rx_program *p, const ast_node *nodes, const ast_node *n,
                              int32_t next) {
    int32_t tail = next;
    if (n->max < 0) { // try the body again or leave
        int32_t loop = inst_add(p, RX_SPLIT, -1, next, -1);
        int32_t body = compile(p, nodes, n->a, loop);
        p->insts[loop].next = body;
        tail = loop;
    }
    for (int k = n->min; k < n->max; k++) // (x(x)?)?
        tail = inst_add(p, RX_SPLIT, compile(p, nodes, n->a, tail), next, -1);
    for (int k = 0; k < n->min; k++) tail = compile(p, nodes, n->a, tail);
    return tail;
}

// The start of node's instructions, which continue at `next` once node has matched.
static int32_t compile(rx_program *p, const ast_node *nodes, int32_t node, int32_t next) {
    const ast_node *n = &nodes[node];
    switch (n->kind) {
    case AST_EMPTY:
        return next;
    case AST_SET:
        return inst_add(p, RX_SET, next, -1, n->set);
    case AST_CAT:
        return compile(p, nodes, n->a, compile(p, nodes, n->b, next));
    case AST_ALT: {
        int32_t a = compile(p, nodes, n->a, next), b = compile(p, nodes, n->b, next);
        return inst_add(p, RX_SPLIT, a, b, -1);
    }
    case AST_REPEAT:
        return compile_repeat(p, nodes, n, next);
    }
    PETAL_CHECK(false, "regex: bad tree node kind %d", (int)n->kind);
}

// ---- sets ----

// Java's Character.isUpperCase: Lu and the Other_Uppercase letters (Roman numerals, circled
// capitals) of the BMP.
static bool is_upper(utf8proc_category_t cat, uint16_t c) {
    return cat == UTF8PROC_CATEGORY_LU || (c >= 0x2160 && c <= 0x216F) ||
           (c >= 0x24B6 && c <= 0x24CF);
}

static bool in_classes(uint8_t classes, uint16_t c) {
    if (!classes) return false;
    utf8proc_category_t cat = utf8proc_category(c);
    bool letter = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
    return ((classes & RX_LETTER) && letter) ||
           ((classes & RX_DIGIT) && cat == UTF8PROC_CATEGORY_ND) ||
           ((classes & RX_UPPER) && is_upper(cat, c));
}

static bool set_has(const rx_program *p, const rx_set *set, uint16_t c) {
    bool in = in_classes(set->classes, c);
    for (size_t k = 0; k < set->n && !in; k++)
        in = c >= p->ranges[set->first + k].lo && c <= p->ranges[set->first + k].hi;
    return in != set->negate;
}

// ---- NFA state sets ----

static void scratch_reserve(rx_program *p) {
    if (p->cap_scratch >= p->n_insts) return;
    size_t n = p->n_insts;
    free(p->list);
    free(p->stack);
    free(p->seen);
    p->list = buffer_alloc(n * sizeof *p->list, "regex states");
    p->stack = buffer_alloc(n * sizeof *p->stack, "regex stack");
    p->seen = buffer_calloc(n, sizeof *p->seen, "regex marks");
    p->generation = 0;
    p->cap_scratch = n;
}

// Starts a new, empty state set in p->list.
static void list_begin(rx_program *p) {
    scratch_reserve(p);
    if (++p->generation == 0) { // wrapped: old marks could pass for new ones
        memset(p->seen, 0, p->cap_scratch * sizeof *p->seen);
        p->generation = 1;
    }
}

// Adds to p->list (*n long) every RX_SET or RX_MATCH instruction reachable from inst by empty
// transitions and not in it yet.
static void list_add(rx_program *p, size_t *n, int32_t inst) {
    size_t top = 0;
    if (p->seen[inst] == p->generation) return;
    p->seen[inst] = p->generation;
    p->stack[top++] = inst;
    while (top) {
        int32_t i = p->stack[--top];
        const rx_inst *in = &p->insts[i];
        if (in->op != RX_SPLIT) {
            p->list[(*n)++] = i;
            continue;
        }
        int32_t succ[2] = {in->alt, in->next};
        for (int k = 0; k < 2; k++)
            if (p->seen[succ[k]] != p->generation) {
                p->seen[succ[k]] = p->generation;
                p->stack[top++] = succ[k];
            }
    }
}

// ---- DFA states ----

static int compare_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static uint64_t hash_states(const int32_t *s, size_t n) {
    uint64_t h = 1469598103934665603ULL; // FNV-1a over the instruction numbers
    for (size_t k = 0; k < n; k++) h = (h ^ (uint32_t)s[k]) * 1099511628211ULL;
    return h;
}

// The index slot holding the state with NFA states s[0, n), or the empty slot where it goes.
static size_t index_slot(const rx_program *p, const int32_t *s, size_t n) {
    size_t mask = p->cap_index - 1, i = hash_states(s, n) & mask;
    for (; p->index[i] >= 0; i = (i + 1) & mask) {
        const rx_dstate *d = &p->dstates[p->index[i]];
        if (d->n == n && memcmp(p->pool + d->first, s, n * sizeof *s) == 0) break;
    }
    return i;
}

static void index_rebuild(rx_program *p, size_t cap) {
    free(p->index);
    p->cap_index = cap;
    p->index = buffer_alloc(cap * sizeof *p->index, "regex DFA index");
    memset(p->index, 0xff, cap * sizeof *p->index);
    for (size_t d = 0; d < p->n_dstates; d++) {
        const rx_dstate *ds = &p->dstates[d];
        p->index[index_slot(p, p->pool + ds->first, ds->n)] = (int32_t)d;
    }
}

// Drops every DFA state (they are rebuilt as matching needs them).
static void dfa_reset(rx_program *p) {
    p->n_dstates = p->n_pool = 0;
    for (size_t k = 0; k < p->n_patterns; k++) p->patterns[k].dstart = -1;
    index_rebuild(p, p->cap_index ? p->cap_index : 1024);
}

// The DFA state of the NFA states in p->list[0, n) (sorted here), added if new.
static int32_t dstate_intern(rx_program *p, size_t n) {
    qsort(p->list, n, sizeof *p->list, compare_i32);
    size_t slot = index_slot(p, p->list, n);
    if (p->index[slot] >= 0) return p->index[slot];
    p->pool = buffer_grow(p->pool, &p->cap_pool, p->n_pool + n, sizeof *p->pool);
    memcpy(p->pool + p->n_pool, p->list, n * sizeof *p->list);
    p->dstates = buffer_grow(p->dstates, &p->cap_dstates, p->n_dstates + 1, sizeof *p->dstates);
    rx_dstate *d = &p->dstates[p->n_dstates];
    *d = (rx_dstate){.first = p->n_pool, .n = n, .match = n && p->list[0] == 0};
    memset(d->next, 0xff, sizeof d->next);
    p->n_pool += n;
    p->index[slot] = (int32_t)p->n_dstates++;
    if (p->n_dstates * 2 > p->cap_index) index_rebuild(p, p->cap_index * 2);
    return (int32_t)p->n_dstates - 1;
}

static int32_t dstate_start(rx_program *p, int32_t pattern) {
    rx_pattern *pat = &p->patterns[pattern];
    if (pat->dstart < 0) {
        size_t n = 0;
        list_begin(p);
        list_add(p, &n, pat->start);
        pat->dstart = dstate_intern(p, n);
    }
    return pat->dstart;
}

// The state after unit c from state d.
static int32_t dstate_step(rx_program *p, int32_t d, uint16_t c) {
    if (c < 128 && p->dstates[d].next[c] >= 0) return p->dstates[d].next[c];
    size_t n = 0;
    list_begin(p);
    for (size_t k = 0; k < p->dstates[d].n; k++) {
        const rx_inst *in = &p->insts[p->pool[p->dstates[d].first + k]];
        if (in->op == RX_SET && set_has(p, &p->sets[in->set], c)) list_add(p, &n, in->next);
    }
    int32_t e = dstate_intern(p, n);
    if (c < 128) p->dstates[d].next[c] = e;
    return e;
}

// ---- matching ----

// Runs pattern number `pattern` from s[pos]; records every match end in p->ends when all_ends.
// Returns the number of ends (all_ends) or the last end (-1 if none).
static int64_t run(rx_program *p, int32_t pattern, const uint16_t *s, int64_t len, int64_t pos,
                   bool all_ends) {
    if (p->n_dstates > RX_MAX_DSTATES) dfa_reset(p);
    size_t n_ends = 0;
    int64_t last = -1;
    for (int32_t d = dstate_start(p, pattern);; pos++) {
        if (p->dstates[d].match) {
            last = pos;
            if (all_ends) {
                p->ends = buffer_grow(p->ends, &p->cap_ends, n_ends + 1, sizeof *p->ends);
                p->ends[n_ends++] = pos;
            }
        }
        if (pos == len) break;
        d = dstate_step(p, d, s[pos]);
        if (p->dstates[d].n == 0) break;
    }
    return all_ends ? (int64_t)n_ends : last;
}

int64_t rx_longest(rx_program *p, int32_t pattern, const uint16_t *s, int64_t len, int64_t pos) {
    return run(p, pattern, s, len, pos, false);
}

int64_t rx_ends(rx_program *p, int32_t pattern, const uint16_t *s, int64_t len, int64_t pos,
                const int64_t **ends) {
    int64_t n = run(p, pattern, s, len, pos, true);
    *ends = p->ends;
    return n;
}

// ---- the program ----

rx_program *rx_new(void) {
    rx_program *p = buffer_calloc(1, sizeof *p, "regex program");
    inst_add(p, RX_MATCH, -1, -1, -1); // instruction 0 accepts, for every pattern
    dfa_reset(p);
    return p;
}

void rx_free(rx_program *p) {
    if (!p) return;
    free(p->insts);
    free(p->sets);
    free(p->ranges);
    free(p->patterns);
    free(p->dstates);
    free(p->pool);
    free(p->index);
    free(p->list);
    free(p->stack);
    free(p->seen);
    free(p->ends);
    free(p);
}

int32_t rx_compile(rx_program *p, const char *pattern) {
    parser ps = {.p = p, .pattern = pattern};
    int32_t root = parse_alt(&ps);
    PETAL_CHECK(peek(&ps) == '\0', "pattern '%s': unexpected '%c' at offset %zu", pattern,
                peek(&ps), ps.i);
    p->patterns =
        buffer_grow(p->patterns, &p->cap_patterns, p->n_patterns + 1, sizeof *p->patterns);
    p->patterns[p->n_patterns] = (rx_pattern){compile(p, ps.nodes, root, 0), -1};
    free(ps.nodes);
    return (int32_t)p->n_patterns++;
}
