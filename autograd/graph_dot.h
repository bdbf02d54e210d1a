// The tape made visible: the autograd graph as Graphviz DOT, and a per-node trace of backward.
//
//     FILE *f = fopen("graph.dot", "w");
//     ag_graph_dot(loss, f);              // then: dot -Tpng graph.dot -o graph.png
//     fclose(f);
//
//     PETAL_TRACE=1 ./my_program          // one stderr line per backward node as it runs
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "autograd/autograd.h"

// Writes the graph reachable from root: one ellipse per op (its name and the tensors it saved),
// one box per leaf that requires grad (bold, blue), one grey box per input that needs no gradient,
// and a box for root itself; edges run input -> op -> consumer and are labelled with the shape
// that flows along them. Ids are positions on the tape and in first-use order, so the same
// computation always gives the same text.
void ag_graph_dot(const tensor *root, FILE *out);

// Whether PETAL_TRACE is set to something other than "" or "0" (read once, at the first call).
bool ag_trace_enabled(void);
// One stderr line for a node whose rule has just run on gout: its op, its output's shape and the L2
// norm of each input gradient it returned ("-" for an input that needs none, "in place" for one the
// rule added straight into the accumulator). gin has node->n_in entries.
void ag_trace_node(const ag_node *node, const tensor *gout, tensor *const *gin);
