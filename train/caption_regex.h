// The regular expressions of a JFlex lexer, matched the way JFlex matches them, for the PTB
// tokenizer of the caption metrics (train/caption_tokenize.c transcribes Stanford's PTBLexer.flex
// with them).
//
// Text is UTF-16 code units, as Java's: a character beyond the BMP is two units that no class but
// a negated one matches. The syntax is the part of JFlex's that the lexer uses:
//     x|y  xy  (x)  x*  x+  x?  x{n}  x{m,n}
//     [a-z\u00A0]  [^...]  [^] (any unit)  . (any unit but \n)
//     [:letter:]  [:digit:]  [:uppercase:]  (Java's isLetter, isDigit and isUpperCase, from
//                                            utf8proc's Unicode categories)
//     \uXXXX  \xXX  \t \n \r \f \0, and \ before any other character for that character
//     a ] outside brackets is that character
// Like JFlex's %caseless, an ASCII letter outside brackets matches both cases; a class does not
// change with case. Patterns are part of the program, so a malformed one aborts (PETAL_CHECK).
#pragma once

#include <stdint.h>

// Compiled patterns, and the automaton that matching builds from them as it goes.
typedef struct rx_program rx_program;

rx_program *rx_new(void);
void rx_free(rx_program *p); // NULL is fine

// Compiles `pattern` into p; returns its number, for rx_longest and rx_ends.
int32_t rx_compile(rx_program *p, const char *pattern);

// The end of the longest match of pattern number `pattern` that begins at s[pos] (s has len
// units), or -1 when none does.
int64_t rx_longest(rx_program *p, int32_t pattern, const uint16_t *s, int64_t len, int64_t pos);
// Every end of such a match, ascending, into *ends (owned by p, valid until its next match);
// returns how many.
int64_t rx_ends(rx_program *p, int32_t pattern, const uint16_t *s, int64_t len, int64_t pos,
                const int64_t **ends);
