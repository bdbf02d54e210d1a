// Scopes: the step arena of docs/architecture.md "Memory model".
//
//     int mark = scope_begin();
//     tensor *loss = model_loss(...);   // every intermediate lands in the scope
//     autograd_backward(loss, NULL, false);
//     optim_step(...);
//     scope_end(mark);                  // all of them are released here, in one call
//
// Scopes nest. Tensors created with no scope open belong to the caller. Library code that makes
// temporaries frees them early with tensor_free, so only what autograd saved stays alive; users
// need not. A tensor that must outlive the scope is taken out with tensor_keep (caller owns it) or
// handed to the enclosing scope with scope_escape.
#pragma once

#include "tensor/tensor.h"

typedef struct scope {
    tensor *head; // most recently registered tensor
    int depth;
} scope;

int scope_begin(void);           // returns a mark for scope_end
void scope_end(int mark);        // aborts if `mark` is not the innermost open scope
tensor *scope_escape(tensor *t); // moves t to the enclosing scope (or to the caller if none)
int scope_depth(void);           // number of open scopes
int64_t scope_count(void);       // tensors owned by the innermost scope (0 if none)

// Internal (tensor.c): ownership links.
void scope_register(tensor *t);
void scope_unlink(tensor *t);
