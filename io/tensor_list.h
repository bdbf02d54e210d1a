// Named tensors in file order: what the .pth, .safetensors and HDF5 readers hand back.
//
// A reader fills the list; the list owns its names and tensors until tensor_list_free. Lookups
// are linear: state dicts hold a few thousand entries at most.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "tensor/tensor.h"

typedef struct {
    char *name;
    tensor *value;
} named_tensor;

typedef struct {
    named_tensor *items;
    int n, cap;
} tensor_list;

void tensor_list_init(tensor_list *l);
void tensor_list_free(tensor_list *l); // frees every name and tensor; leaves an empty list

// Appends t under a copy of `name`, taking ownership of t (it leaves its scope, if any).
// Aborts if the name is taken: readers check with tensor_list_find and report duplicates.
void tensor_list_add(tensor_list *l, const char *name, tensor *t);
named_tensor *tensor_list_find(const tensor_list *l, const char *name);
// Removes entry i (freeing its name and tensor), keeping the order of the others.
void tensor_list_remove(tensor_list *l, int i);

// t itself (a new struct) if it is a contiguous CPU tensor, else a contiguous CPU copy: what file
// writers and hashes read bytes from. The caller frees it.
tensor *tensor_host_contiguous(const tensor *t);

// Every dim is non-negative and the product of the non-zero dims is at most max_elements: what a
// reader checks before tensor_empty allocates a shape it read from a file (a zero dim must not
// hide an overflowing product either).
bool tensor_shape_within(int ndim, const int64_t *shape, uint64_t max_elements);
