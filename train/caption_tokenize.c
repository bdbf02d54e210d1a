// pycocoevalcap's PTBTokenizer: CoreNLP's PTBLexer (v3.4.1) as PTBTokenizer -preserveLines
// -lowerCase runs it, then pycocoevalcap's punctuation filter. The lexer is JFlex's: at each
// position the rule with the longest match wins (a trailing context r/c counts in the length but
// is not consumed), the first rule on ties, and the action may give units back to be scanned
// again. The macros and rules below are PTBLexer.flex's, in its order; the rules for options that
// command line leaves off (Americanize, escaping / and *, strict Treebank 3) are left out.
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "io/buffer.h"
#include "io/text.h"
#include "train/caption_metrics.h"
#include "train/caption_regex.h"

// ---- PTBLexer.flex's macros, each in parentheses as JFlex expands them; {NAME} is PTB_NAME ----
#define PTB_SGML                                                                                   \
    "(\\<([!\\?][A-Za-z\\-][^>\\r\\n]*"                                                            \
    "|[A-Za-z][A-Za-z0-9_:\\.\\-]*([ ]+([A-Za-z][A-Za-z0-9_:\\.\\-]*"                              \
    "|[A-Za-z][A-Za-z0-9_:\\.\\-]*[ ]*=[ ]*('[^']*'|\\\"[^\\\"]*\\\")))*[ ]*\\/?"                  \
    "|\\/[A-Za-z][A-Za-z0-9_:\\.\\-]*)[ ]*\\>)"
#define PTB_SPMDASH  "(&(MD|mdash|ndash);|[\\u0096\\u0097\\u2013\\u2014\\u2015])"
#define PTB_SPAMP    "(&amp;)"
#define PTB_SPPUNC   "(&(HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);)"
#define PTB_SPLET    "(&[aeiouAEIOU](acute|grave|uml);)"
#define PTB_SPACE    "([ \\t\\u00A0\\u2000-\\u200A\\u3000])"
#define PTB_SPACES   "(" PTB_SPACE "+)"
#define PTB_NEWLINE  "(\\r|\\r?\\n|\\u2028|\\u2029|\\u000B|\\u000C|\\u0085)"
#define PTB_SPACENL  "((" PTB_SPACE "|" PTB_NEWLINE "))"
#define PTB_SPACENLS "(" PTB_SPACENL "+)"
#define PTB_SENTEND  "(" PTB_SPACENL "(" PTB_SPACENL "|[:uppercase:]|" PTB_SGML "))"
#define PTB_DIGIT    "([:digit:]|[\\u07C0-\\u07C9])"
#define PTB_DATE     "(" PTB_DIGIT "{1,2}[\\-\\/]" PTB_DIGIT "{1,2}[\\-\\/]" PTB_DIGIT "{2,4})"
#define PTB_NUM      "(" PTB_DIGIT "+|" PTB_DIGIT "*([.:,\\u00AD\\u066B\\u066C]" PTB_DIGIT "+)+)"
#define PTB_NUMBER   "([\\-+]?" PTB_NUM ")"
#define PTB_SUBSUPNUM                                                                              \
    "([\\u207A\\u207B\\u208A\\u208B]?([\\u2070\\u00B9\\u00B2\\u00B3\\u2074-\\u2079]+|["            \
    "\\u2080-\\u2089]+))"
#define PTB_FRAC                                                                                   \
    "((" PTB_DIGIT "{1,4}[- \\u00A0])?" PTB_DIGIT "{1,4}(\\\\?\\/|\\u2044)" PTB_DIGIT "{1,4})"
#define PTB_FRAC2   "([\\u00BC\\u00BD\\u00BE\\u2153-\\u215E])"
#define PTB_DOLSIGN "(([A-Z]*\\$|#))"
#define PTB_DOLSIGN2                                                                               \
    "([\\u00A2\\u00A3\\u00A4\\u00A5\\u0080\\u20A0\\u20AC\\u060B\\u0E3F\\u20A4\\uFFE0"              \
    "\\uFFE1\\uFFE5\\uFFE6])"
#define PTB_LETTER                                                                                 \
    "(([:letter:]|" PTB_SPLET                                                                      \
    "|[\\u00AD\\u0237-\\u024F\\u02C2-\\u02C5\\u02D2-\\u02DF\\u02E5-\\u02FF\\u0300-\\u036F"         \
    "\\u0370-\\u037D\\u0384\\u0385\\u03CF\\u03F6\\u03FC-\\u03FF\\u0483-\\u0487\\u04CF"             \
    "\\u04F6-\\u04FF\\u0510-\\u0525\\u055A-\\u055F\\u0591-\\u05BD\\u05BF\\u05C1\\u05C2"            \
    "\\u05C4\\u05C5\\u05C7\\u0615-\\u061A\\u063B-\\u063F\\u064B-\\u065E\\u0670\\u06D6-"            \
    "\\u06EF\\u06FA-\\u06FF\\u070F\\u0711\\u0730-\\u074F\\u0750-\\u077F\\u07A6-\\u07B1"            \
    "\\u07CA-\\u07F5\\u07FA\\u0900-\\u0903\\u093C\\u093E-\\u094E\\u0951-\\u0955\\u0962-"           \
    "\\u0963\\u0981-\\u0983\\u09BC-\\u09C4\\u09C7\\u09C8\\u09CB-\\u09CD\\u09D7\\u09E2"             \
    "\\u09E3\\u0A01-\\u0A03\\u0A3C\\u0A3E-\\u0A4F\\u0A81-\\u0A83\\u0ABC-\\u0ACF\\u0B82"            \
    "\\u0BBE-\\u0BC2\\u0BC6-\\u0BC8\\u0BCA-\\u0BCD\\u0C01-\\u0C03\\u0C3E-\\u0C56\\u0D3E-"          \
    "\\u0D44\\u0D46-\\u0D48\\u0E30-\\u0E3A\\u0E47-\\u0E4E\\u0EB1-\\u0EBC\\u0EC8-\\u0ECD]))"
#define PTB_WORD                                                                                   \
    "(" PTB_LETTER "(" PTB_LETTER "|" PTB_DIGIT ")*([.!?]" PTB_LETTER "(" PTB_LETTER "|" PTB_DIGIT \
    ")*)*)"
#define PTB_FILENAME_EXT                                                                           \
    "(bat|bmp|c|class|cgi|cpp|dll|doc|docx|exe|gif|gz|h|htm|html|jar|java|jpeg|jpg|mov|mp3"        \
    "|pdf|php|pl|png|ppt|ps|py|sql|tar|txt|wav|x|xml|zip)"
#define PTB_FILENAME                                                                               \
    "((" PTB_LETTER "|" PTB_DIGIT ")+([.](" PTB_LETTER "|" PTB_DIGIT ")+)*([.]" PTB_FILENAME_EXT   \
    "))"
#define PTB_THING                                                                                  \
    "(([dDoOlL]" PTB_APOSETCETERA "([:letter:]|[:digit:]))?([:letter:]|[:digit:])+(" PTB_HYPHEN    \
    "([dDoOlL]" PTB_APOSETCETERA "([:letter:]|[:digit:]))?([:letter:]|[:digit:])+)*)"
#define PTB_THINGA       "([A-Z]+(([+&]|" PTB_SPAMP ")[A-Z]+)+)"
#define PTB_THING3       "([A-Za-z0-9]+(-[A-Za-z]+){0,2}(\\\\?\\/[A-Za-z0-9]+(-[A-Za-z]+){0,2}){1,2})"
#define PTB_APOS         "(['\\u0092\\u2019]|&apos;)"
#define PTB_APOSETCETERA "(" PTB_APOS "|[`\\u0091\\u2018\\u201B])"
#define PTB_HTHING       "([A-Za-z0-9][A-Za-z0-9.,\\u00AD]*(-([A-Za-z0-9\\u00AD]+|" PTB_ACRO2 "\\.))+)"
#define PTB_REDAUX       "(" PTB_APOS "([msdMSD]|re|ve|ll))"
#define PTB_SWORD        "([A-Za-z\\u00AD]*[A-MO-Za-mo-z](\\u00AD)*)"
#define PTB_SREDAUX      "(n" PTB_APOSETCETERA "t)"
#define PTB_APOWORD                                                                                \
    "(" PTB_APOS "n" PTB_APOS "?|[lLdDjJ]" PTB_APOS "|Dunkin" PTB_APOS "|somethin" PTB_APOS        \
    "|ol" PTB_APOS "|" PTB_APOS "em|[A-HJ-XZn]" PTB_APOSETCETERA                                   \
    "[:letter:]{2}[:letter:]*|" PTB_APOS "[2-9]0s|" PTB_APOS                                       \
    "till?|[:letter:][:letter:]*[aeiouyAEIOUY]" PTB_APOSETCETERA "[aeiouA-Z][:letter:]*|" PTB_APOS \
    "cause|cont'd\\.?|'twas|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l|O" PTB_APOSETCETERA     \
    "o)"
#define PTB_APOWORD2 "(y" PTB_APOS ")"
#define PTB_FULLURL  "(https?:\\/\\/[^ \\t\\n\\f\\r\\\"<>|(){}]+[^ \\t\\n\\f\\r\\\"<>|.!?(){},-])"
#define PTB_LIKELYURL                                                                              \
    "(((www\\.([^ \\t\\n\\f\\r\\\"<>|.!?(){},]+\\.)+[a-zA-Z]{2,4})"                                \
    "|(([^ \\t\\n\\f\\r\\\"`'<>|.!?(){},-_$]+\\.)+(com|net|org"                                    \
    "|edu)))(\\/[^ \\t\\n\\f\\r\\\"<>|()]+[^ \\t\\n\\f\\r\\\"<>|.!?(){},-])?)"
#define PTB_EMAIL                                                                                  \
    "((&lt;|<)?[a-zA-Z0-9][^ \\t\\n\\f\\r\\\"<>|()\\u00A0{}]*@([^ \\t\\n\\f\\r\\\"<>|(){}."        \
    "\\u00A0]+\\.)*([^ \\t\\n\\f\\r\\\"<>|(){}.\\u00A0]+)(&gt;|>)?)"
#define PTB_TWITTER_NAME     "(@[a-zA-Z_][a-zA-Z_0-9]*)"
#define PTB_TWITTER_CATEGORY "(#" PTB_LETTER "+)"
#define PTB_TWITTER          "(" PTB_TWITTER_NAME "|" PTB_TWITTER_CATEGORY ")"
#define PTB_ABMONTH          "(Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)"
#define PTB_ABDAYS           "(Mon|Tue|Tues|Wed|Thu|Thurs|Fri)"
#define PTB_ABSTATE                                                                                \
    "(Ala|Ariz|[A]z|[A]rk|Calif|Colo|Conn|Ct|Dak|[D]el|Fla|Ga|[I]ll|Ind|Kans?|Ky|[L]a"             \
    "|[M]ass|Md|Mich|Minn|[M]iss|Mo|Mont|Neb|Nev|Okla|[O]re|[P]a|Penn|Tenn|[T]ex|Va|Vt"            \
    "|[W]ash|Wisc?|Wyo)"
#define PTB_ABCOMP "(Inc|Cos?|Corp|Pp?t[ye]s?|Ltd|Plc|Rt|Bancorp|Bhd|Assn|Univ|Intl|Sys)"
#define PTB_ABNUM  "(tel|est|ext|sq)"
#define PTB_ABPTIT "(Jr|Sr|Bros|(Ed|Ph)\\.D|Blvd|Rd|Esq)"
#define PTB_ABBREV1                                                                                \
    "((" PTB_ABMONTH "|" PTB_ABDAYS "|" PTB_ABSTATE "|" PTB_ABCOMP "|" PTB_ABNUM "|" PTB_ABPTIT    \
    "|etc|al|seq|Bldg)\\.)"
#define PTB_ACRO                                                                                   \
    "([A-Za-z](\\.[A-Za-z])*|(Canada|Sino|Korean|EU|Japan|non)-U\\.S|U\\.S\\.-(U\\.K"              \
    "|U\\.S\\.S\\.R))"
#define PTB_ACRO2                                                                                  \
    "([A-Za-z](\\.[A-Za-z])+|(Canada|Sino|Korean|EU|Japan|non)-U\\.S|U\\.S\\.-(U\\.K"              \
    "|U\\.S\\.S\\.R))"
#define PTB_ABTITLE                                                                                \
    "(Mr|Mrs|Ms|[M]iss|Drs?|Profs?|Sens?|Reps?|Attys?|Lt|Col|Gen|Messrs|Govs?|Adm|Rev|Maj"         \
    "|Sgt|Cpl|Pvt|Capt|Ste?|Ave|Pres|Lieut|Hon|Brig|Co?mdr|Pfc|Spc|Supts?|Det|Mt|Ft|Adj"           \
    "|Adv|Asst|Assoc|Ens|Insp|Mlle|Mme|Msgr|Sfc)"
#define PTB_ABCOMP2 "(Invt|Elec|Natl|M[ft]g|Dept)"
#define PTB_ABBREV4                                                                                \
    "(" PTB_ABTITLE "|vs|Alex|Wm|Jos|Cie|a\\.k\\.a|cf|TREAS|Ph|" PTB_ACRO "|" PTB_ABCOMP2 ")"
#define PTB_ABBREV2 "(" PTB_ABBREV4 "\\.)"
#define PTB_ACRONYM "((" PTB_ACRO ")\\.)"
#define PTB_ABBREV3 "((ca|figs?|prop|nos?|art|bldg|prop|pp|op)\\.)"
#define PTB_PHONE                                                                                  \
    "((\\([0-9]{2,3}\\)[ \\u00A0]?|(\\+\\+?)?([0-9]{2,4}[\\- \\u00A0])?[0-9]{2,4}[\\- "            \
    "\\u00A0])[0-9]{3,4}[\\- \\u00A0]?[0-9]{3,5}"                                                  \
    "|((\\+\\+?)?[0-9]{2,4}\\.)?[0-9]{2,4}\\.[0-9]{3,4}\\.[0-9]{3,5})"
#define PTB_FAKEDUCKFEET "(<<|>>)"
#define PTB_LESSTHAN     "(<|&lt;)"
#define PTB_GREATERTHAN  "(>|&gt;)"
#define PTB_HYPHEN       "([-_\\u058A\\u2010\\u2011])"
#define PTB_HYPHENS      "(\\-+)"
#define PTB_LDOTS        "(\\.{3,5}|(\\.[ \\u00A0]){2,4}\\.|[\\u0085\\u2026])"
#define PTB_ATS          "(@+)"
#define PTB_UNDS         "(_+)"
#define PTB_ASTS         "(\\*+|(\\\\\\*){1,3})"
#define PTB_HASHES       "(#+)"
#define PTB_FNMARKS      "(" PTB_ATS "|" PTB_HASHES "|" PTB_UNDS ")"
#define PTB_INSENTP      "([,;:\\u3001])"
#define PTB_QUOTES                                                                                 \
    "(" PTB_APOS                                                                                   \
    "|''|[`\\u2018\\u2019\\u201A\\u201B\\u201C\\u201D\\u0091\\u0092\\u0093\\u0094\\u201E"          \
    "\\u201F\\u2039\\u203A\\u00AB\\u00BB]{1,2})"
#define PTB_DBLQUOT "(\\\"|&quot;)"
#define PTB_TBSPEC                                                                                 \
    "(-(RRB|LRB|RCB|LCB|RSB|LSB)-|C\\.D\\.s|pro-|anti-|S(&|&amp;)P-500|S(&|&amp;)Ls|Cap" PTB_APOS  \
    "n|c" PTB_APOS "est)"
#define PTB_TBSPEC2 "(" PTB_APOS "[0-9][0-9])"
#define PTB_SMILEY  "([<>]?[:;=][\\-o\\*']?[\\(\\)DPdpO\\\\{@\\|\\[\\]])"
// Outside brackets JFlex reads "~<" in the first alternative as its "up to" operator: anything up
// to and including the first '<', written here as [^<]*<.
#define PTB_ASIANSMILEY                                                                            \
    "([\\^x=~<>]\\.\\[\\^x=[^<]*<>]|[\\-\\^x=~<>']_[\\-\\^x=~<>']"                                 \
    "|\\([\\-\\^x=~<>'][_.]?[\\-\\^x=~<>']\\)|\\([\\^x=~<>']-[\\^x=~<>'`]\\))"
#define PTB_MISCSYMBOL                                                                             \
    "([+%&~\\^|\\\\\\u00A6\\u00A7\\u00A8\\u00A9\\u00AC\\u00AE\\u00AF\\u00B0-\\u00B3"               \
    "\\u00B4-\\u00BA\\u00D7\\u00F7\\u0387\\u05BE\\u05C0\\u05C3\\u05C6\\u05F3\\u05F4"               \
    "\\u0600-\\u0603\\u0606-\\u060A\\u060C\\u0614\\u061B\\u061E\\u066A\\u066D\\u0703-"             \
    "\\u070D\\u07F6\\u07F7\\u07F8\\u0964\\u0965\\u0E4F\\u1FBD\\u2016\\u2017\\u2020-"               \
    "\\u2023\\u2030-\\u2038\\u203B\\u203E-\\u2042\\u2044\\u207A-\\u207F\\u208A-\\u208E"            \
    "\\u2100-\\u214F\\u2190-\\u21FF\\u2200-\\u2BFF\\u3012\\u30FB\\uFF01-\\uFF0F\\uFF1A-"           \
    "\\uFF20\\uFF3B-\\uFF40\\uFF5B-\\uFF65\\uFF65])"

// The words after which an acronym ends a sentence (the rule's trailing context).
#define PTB_ACRONYM_NEXT                                                                           \
    "(" PTB_SPACENLS ")([A]bout|[A]ccording|[A]dditionally|[A]fter|[A]n|[A]|[A]s|[A]t|[B]ut|"      \
    "[E]arlier|[H]e|[H]er|[H]ere|[H]owever|[I]f|[I]n|[I]t|[L]ast|[M]any|[M]ore|[M]r\\.|[M]s\\.|"   \
    "[N]ow|[O]nce|[O]ne|[O]ther|[O]ur|[S]he|[S]ince|[S]o|[S]ome|[S]uch|[T]hat|[T]he|[T]heir|"      \
    "[T]hen|[T]here|[T]hese|[T]hey|[T]his|[W]e|[W]hen|[W]hile|[W]hat|[Y]et|[Y]ou|" PTB_SGML        \
    ")" PTB_SPACENL

typedef enum {
    LEX_EMIT,         // the matched text
    LEX_SKIP,         // nothing: white space, and the characters no rule tokenizes
    LEX_NEWLINE,      // a line break when it holds '\n' (see caption_metrics.h), else white space
    LEX_REPLACE,      // rule.text
    LEX_PUSHBACK,     // the text but its last rule.pushback units, which are scanned again
    LEX_ACRONYM,      // "I." -> "I" then "."; longer ones keep the period and give it back too
    LEX_PERIOD_AGAIN, // the text, and its final period scanned again (a sentence end)
    LEX_HYPHENS,      // "--" for 3 or 4 hyphens, else the text
} ptb_kind;

// The lexer's normalizations of a token's text (per unit or entity).
enum {
    TF_SOFT_HYPHENS = 1, // U+00AD deleted ("-" if nothing is left)
    TF_AMP = 2,          // &amp; -> &
    TF_NBSP = 4,         // space -> U+00A0
    TF_PARENS = 8,       // ( ) -> -LRB- -RRB-
    TF_FRACTIONS = 16,   // the vulgar fraction characters -> 1/4 ...
    TF_CURRENCY = 32,    // cent, pound, euro ... signs -> cents # $
    TF_QUOTE_LEFT = 64,  // LaTeX quotes, ' and " taken as opening
    TF_QUOTE_RIGHT = 128 // LaTeX quotes, ' and " taken as closing
};

typedef struct {
    const char *pattern;
    const char *context; // JFlex's trailing context (pattern/context), or NULL
    ptb_kind kind;
    unsigned transforms;
    const uint16_t *text; // PTB_REPLACE
    int pushback;         // PTB_PUSHBACK
} ptb_rule;

static const ptb_rule ptb_rules[] = {
    {"c[+][+]", NULL, LEX_EMIT, 0, NULL, 0},
    {"(c|f)#", NULL, LEX_EMIT, 0, NULL, 0},
    {"cannot", NULL, LEX_PUSHBACK, 0, NULL, 3},
    {"'twas", NULL, LEX_PUSHBACK, 0, NULL, 3},
    {"'tis", NULL, LEX_PUSHBACK, 0, NULL, 2},
    {"gonna|gotta|lemme|gimme|wanna", NULL, LEX_PUSHBACK, 0, NULL, 2},
    {PTB_SGML, NULL, LEX_EMIT, TF_NBSP, NULL, 0},
    {PTB_SPMDASH, NULL, LEX_REPLACE, 0, u"--", 0},
    {PTB_SPAMP, NULL, LEX_EMIT, TF_AMP, NULL, 0},
    {PTB_SPPUNC, NULL, LEX_EMIT, 0, NULL, 0},
    {PTB_WORD, PTB_REDAUX, LEX_EMIT, TF_SOFT_HYPHENS, NULL, 0},
    {PTB_SWORD, PTB_SREDAUX, LEX_EMIT, TF_SOFT_HYPHENS, NULL, 0},
    {PTB_WORD, NULL, LEX_EMIT, TF_SOFT_HYPHENS, NULL, 0},
    {PTB_APOWORD, NULL, LEX_EMIT, 0, NULL, 0},
    {PTB_APOWORD2, "[:letter:]", LEX_EMIT, 0, NULL, 0},
    {PTB_FULLURL, NULL, LEX_EMIT, 0, NULL, 0},
    {PTB_LIKELYURL, NULL, LEX_EMIT, 0, NULL, 0},
    {PTB_EMAIL, NULL, LEX_EMIT, 0, NULL, 0},
    {PTB_TWITTER, NULL, LEX_EMIT, 0, NULL, 0},
    {PTB_REDAUX, "[^A-Za-z]", LEX_EMIT, TF_QUOTE_RIGHT, NULL, 0},
    {PTB_SREDAUX, "[^A-Za-z]", LEX_EMIT, TF_QUOTE_RIGHT, NULL, 0},
    {PTB_DATE, NULL, LEX_EMIT, 0, NULL, 0},
    {PTB_NUMBER, NULL, LEX_EMIT, TF_SOFT_HYPHENS, NULL, 0},
    {PTB_SUBSUPNUM, NULL, LEX_EMIT, 0, NULL, 0},
    {PTB_FRAC, NULL, LEX_EMIT, TF_NBSP, NULL, 0},
    {PTB_FRAC2, NULL, LEX_EMIT, TF_FRACTIONS, NULL, 0},
    {PTB_TBSPEC, NULL, LEX_EMIT, TF_AMP, NULL, 0},
    {PTB_THING3, NULL, LEX_EMIT, 0, NULL, 0},
    {PTB_DOLSIGN, NULL, LEX_EMIT, 0, NULL, 0},
    {PTB_DOLSIGN2, NULL, LEX_EMIT, TF_CURRENCY, NULL, 0},
    {PTB_ACRONYM, PTB_ACRONYM_NEXT, LEX_ACRONYM, 0, NULL, 0},
    {PTB_ABBREV3, PTB_SPACENL "?[:digit:]", LEX_EMIT, 0, NULL, 0},
    {"(pt[eyEY]|co)\\.", PTB_SPACE "(ltd|lim)", LEX_EMIT, 0, NULL, 0},
    {PTB_ABBREV1, PTB_SENTEND, LEX_PERIOD_AGAIN, 0, NULL, 0},
    {PTB_ABBREV1, "[^][^]", LEX_EMIT, 0, NULL, 0},
    {PTB_ABBREV1, NULL, LEX_PERIOD_AGAIN, 0, NULL, 0},
    {PTB_ABBREV2, NULL, LEX_EMIT, 0, NULL, 0},
    {PTB_ABBREV4, PTB_SPACE, LEX_EMIT, 0, NULL, 0},
    {PTB_ACRO, PTB_SPACENL, LEX_EMIT, 0, NULL, 0},
    {PTB_TBSPEC2, PTB_SPACENL, LEX_EMIT, 0, NULL, 0},
    {PTB_FILENAME, "(" PTB_SPACENL "|[.?!,])", LEX_EMIT, 0, NULL, 0},
    {PTB_WORD "\\.", PTB_INSENTP, LEX_EMIT, TF_SOFT_HYPHENS, NULL, 0},
    {PTB_PHONE, NULL, LEX_EMIT, TF_NBSP | TF_PARENS, NULL, 0},
    {PTB_DBLQUOT, "[A-Za-z0-9$]", LEX_EMIT, TF_QUOTE_LEFT, NULL, 0},
    {PTB_DBLQUOT, NULL, LEX_EMIT, TF_QUOTE_RIGHT, NULL, 0},
    {"\\x7f", NULL, LEX_SKIP, 0, NULL, 0},
    {PTB_LESSTHAN, NULL, LEX_REPLACE, 0, u"<", 0},
    {PTB_GREATERTHAN, NULL, LEX_REPLACE, 0, u">", 0},
    {PTB_SMILEY, "[^A-Za-z0-9]", LEX_EMIT, TF_PARENS, NULL, 0},
    {PTB_ASIANSMILEY, NULL, LEX_EMIT, TF_PARENS, NULL, 0},
    {"\\{", NULL, LEX_REPLACE, 0, u"-LCB-", 0},
    {"\\}", NULL, LEX_REPLACE, 0, u"-RCB-", 0},
    {"\\[", NULL, LEX_REPLACE, 0, u"-LSB-", 0},
    {"\\]", NULL, LEX_REPLACE, 0, u"-RSB-", 0},
    {"\\(", NULL, LEX_REPLACE, 0, u"-LRB-", 0},
    {"\\)", NULL, LEX_REPLACE, 0, u"-RRB-", 0},
    {PTB_HYPHENS, NULL, LEX_HYPHENS, 0, NULL, 0},
    {PTB_LDOTS, NULL, LEX_REPLACE, 0, u"...", 0},
    {PTB_FNMARKS, NULL, LEX_EMIT, 0, NULL, 0},
    {PTB_ASTS, NULL, LEX_EMIT, 0, NULL, 0},
    {PTB_INSENTP, NULL, LEX_EMIT, 0, NULL, 0},
    {"[?!]+", NULL, LEX_EMIT, 0, NULL, 0},
    {"[.\\u00A1\\u00BF\\u037E\\u0589\\u061F\\u06D4\\u0700-\\u0702\\u07FA\\u3002]", NULL, LEX_EMIT,
     0, NULL, 0},
    {"=", NULL, LEX_EMIT, 0, NULL, 0},
    {"\\/", NULL, LEX_EMIT, 0, NULL, 0},
    {PTB_HTHING "\\.", PTB_INSENTP, LEX_EMIT, TF_SOFT_HYPHENS, NULL, 0},
    {PTB_HTHING, NULL, LEX_EMIT, TF_SOFT_HYPHENS, NULL, 0},
    {PTB_THING "\\.", PTB_INSENTP, LEX_EMIT, 0, NULL, 0},
    {PTB_THING, NULL, LEX_EMIT, 0, NULL, 0},
    {PTB_THINGA "\\.", PTB_INSENTP, LEX_EMIT, TF_AMP, NULL, 0},
    {PTB_THINGA, NULL, LEX_EMIT, TF_AMP, NULL, 0},
    {"'", "[A-Za-z][^ \\t\\n\\r\\u00A0]", LEX_EMIT, TF_QUOTE_LEFT, NULL, 0},
    {PTB_REDAUX, NULL, LEX_EMIT, TF_QUOTE_RIGHT, NULL, 0},
    {PTB_SREDAUX, NULL, LEX_EMIT, TF_QUOTE_RIGHT, NULL, 0},
    {PTB_QUOTES, NULL, LEX_EMIT, TF_QUOTE_RIGHT, NULL, 0},
    {PTB_FAKEDUCKFEET, NULL, LEX_EMIT, 0, NULL, 0},
    {PTB_MISCSYMBOL, NULL, LEX_EMIT, 0, NULL, 0},
    {"\\0|" PTB_SPACES "|[\\u200B\\u200E-\\u200F\\uFEFF]", NULL, LEX_SKIP, 0, NULL, 0},
    {PTB_NEWLINE, NULL, LEX_NEWLINE, 0, NULL, 0},
    {"&nbsp;", NULL, LEX_SKIP, 0, NULL, 0},
    {".", NULL, LEX_SKIP, 0, NULL, 0}, // untokenizable: CoreNLP deletes it with a warning
};

#define PTB_N_RULES ((int)(sizeof ptb_rules / sizeof *ptb_rules))

// pycocoevalcap's PUNCTUATIONS, verbatim. The upper-case bracket tokens never match: the tokens
// are lowercased first, so "-lrb-" and the like stay.
static const char *const pycoco_punctuations[] = {"''",    "'",     "``", "`",   "-LRB-", "-RRB-",
                                                  "-LCB-", "-RCB-", ".",  "?",   "!",     ",",
                                                  ":",     "-",     "--", "...", ";"};

typedef struct {
    uint16_t *data;
    size_t len, cap;
} u16buf;

static void u16_push(u16buf *b, uint16_t c) {
    b->data = buffer_grow(b->data, &b->cap, b->len + 1, sizeof *b->data);
    b->data[b->len++] = c;
}

static void u16_push_str(u16buf *b, const uint16_t *s) {
    for (; *s; s++) u16_push(b, *s);
}

typedef struct {
    rx_program *rx;
    int32_t pattern[PTB_N_RULES], context[PTB_N_RULES]; // starts; context -1 when none
    u16buf units;                                       // the token being written
    strbuf utf8, lower;                                 // the token, then lowercased
    strbuf line;                                        // the line as the Java program prints it
    bool begin_line;                                    // PTBTokenizer's flag: no space yet
    char **out;
    int64_t n_out, n_lines;
} ptb_state;

static void ptb_init(ptb_state *st, char **out, int64_t n) {
    *st = (ptb_state){.rx = rx_new(), .out = out, .n_lines = n, .begin_line = true};
    for (int k = 0; k < PTB_N_RULES; k++) {
        st->pattern[k] = rx_compile(st->rx, ptb_rules[k].pattern);
        st->context[k] = ptb_rules[k].context ? rx_compile(st->rx, ptb_rules[k].context) : -1;
    }
}

static void ptb_free(ptb_state *st) {
    rx_free(st->rx);
    free(st->units.data);
    strbuf_free(&st->utf8);
    strbuf_free(&st->lower);
    strbuf_free(&st->line);
}

// ---- matching: which rule, and where its token ends ----

// The longest match of rule k with its trailing context at s[pos]: returns the end of the
// context (-1 if none), with the token's end (the longest such split) in *end.
static int64_t match_with_context(ptb_state *st, int k, const uint16_t *s, int64_t len, int64_t pos,
                                  int64_t *end) {
    const int64_t *ends;
    int64_t n = rx_ends(st->rx, st->pattern[k], s, len, pos, &ends), best = -1;
    for (int64_t j = n - 1; j >= 0; j--) {
        int64_t e = ends[j], c = rx_longest(st->rx, st->context[k], s, len, e);
        if (c > best) {
            best = c;
            *end = e;
        }
    }
    return best;
}

static int ptb_match(ptb_state *st, const uint16_t *s, int64_t len, int64_t pos, int64_t *end) {
    int best = -1;
    int64_t best_total = pos;
    for (int k = 0; k < PTB_N_RULES; k++) {
        int64_t tok = pos, total;
        if (st->context[k] < 0)
            tok = total = rx_longest(st->rx, st->pattern[k], s, len, pos);
        else
            total = match_with_context(st, k, s, len, pos, &tok);
        if (total > best_total) {
            best = k;
            best_total = total;
            *end = tok;
        }
    }
    PETAL_CHECK(best >= 0, "PTB lexer: no rule matches unit %u", (unsigned)s[pos]);
    return best;
}

// ---- writing tokens ----

static bool has_prefix(const uint16_t *t, int64_t n, const char *prefix, bool caseless) {
    for (int64_t i = 0; prefix[i]; i++) {
        uint16_t c = i < n ? t[i] : 0;
        if (caseless && c < 128 && c >= 'A' && c <= 'Z') c += 32;
        if (c != (unsigned char)prefix[i]) return false;
    }
    return true;
}

// PTBLexer's latexQuotes on the unit (or entity) at t[0].
static const uint16_t *quote_unit(bool left, const uint16_t *t, int64_t n, int64_t *used) {
    bool single = has_prefix(t, n, "&apos;", false), dbl = has_prefix(t, n, "&quot;", false);
    if (single || dbl) *used = 6;
    if (single || t[0] == '\'') return left ? u"`" : u"'";
    if (dbl || t[0] == '"') return left ? u"``" : u"''";
    switch (t[0]) {
    case 0x91:
    case 0x2018:
    case 0x201B:
    case 0x2039:
        return u"`";
    case 0x92:
    case 0x2019:
    case 0x203A:
        return u"'";
    case 0x93:
    case 0x201C:
    case 0xAB:
        return u"``";
    case 0x94:
    case 0x201D:
    case 0xBB:
        return u"''";
    default:
        return NULL;
    }
}

static const uint16_t *fraction_unit(uint16_t c) {
    switch (c) {
    case 0xBC:
        return u"1/4";
    case 0xBD:
        return u"1/2";
    case 0xBE:
        return u"3/4";
    case 0x2153:
        return u"1/3";
    case 0x2154:
        return u"2/3";
    default:
        return NULL;
    }
}

static const uint16_t *currency_unit(uint16_t c) {
    switch (c) {
    case 0xA2:
        return u"cents";
    case 0xA3:
        return u"#";
    case 0x80:
    case 0xA4:
    case 0x20A0:
    case 0x20AC:
        return u"$";
    default:
        return NULL;
    }
}

// What the transforms make of t[0] (and the *used units it starts), or NULL to keep it.
static const uint16_t *transform_unit(unsigned tf, const uint16_t *t, int64_t n, int64_t *used) {
    *used = 1;
    if ((tf & TF_SOFT_HYPHENS) && t[0] == 0xAD) return u"";
    if ((tf & TF_AMP) && has_prefix(t, n, "&amp;", true)) {
        *used = 5;
        return u"&";
    }
    if ((tf & TF_NBSP) && t[0] == ' ') return u"\u00A0";
    if ((tf & TF_PARENS) && (t[0] == '(' || t[0] == ')')) return t[0] == '(' ? u"-LRB-" : u"-RRB-";
    if (tf & TF_FRACTIONS) return fraction_unit(t[0]);
    if (tf & TF_CURRENCY) return currency_unit(t[0]);
    if (tf & (TF_QUOTE_LEFT | TF_QUOTE_RIGHT)) return quote_unit(tf & TF_QUOTE_LEFT, t, n, used);
    return NULL;
}

// Ends the current output line: pycocoevalcap's
//     ' '.join([w for w in line.rstrip().split(' ') if w not in PUNCTUATIONS])
static void line_end(ptb_state *st) {
    PETAL_CHECK(st->n_out < st->n_lines, "PTB tokenizer: more lines than captions");
    size_t start, end;
    text_strip(st->line.data ? st->line.data : "", st->line.len, &start, &end);
    if (start == end) end = 0; // all white space: rstrip leaves nothing
    strbuf kept = {0};
    bool first = true;
    for (size_t i = 0; i <= end;) {
        size_t j = i;
        while (j < end && st->line.data[j] != ' ') j++;
        bool punct = false;
        for (size_t k = 0; k < sizeof pycoco_punctuations / sizeof *pycoco_punctuations; k++)
            punct |= strlen(pycoco_punctuations[k]) == j - i &&
                     memcmp(pycoco_punctuations[k], st->line.data + i, j - i) == 0;
        if (!punct) {
            if (!first) strbuf_push(&kept, ' ');
            strbuf_append(&kept, st->line.data ? st->line.data + i : "", j - i);
            first = false;
        }
        i = j + 1;
    }
    st->out[st->n_out++] = strbuf_take(&kept);
    strbuf_clear(&st->line);
}

// Java's UTF-8 encoder: surrogate pairs joined, a lone surrogate written as '?'.
static void units_to_utf8(const u16buf *u, strbuf *out) {
    for (size_t i = 0; i < u->len; i++) {
        uint16_t c = u->data[i];
        bool high = c >= 0xD800 && c < 0xDC00;
        if (high && i + 1 < u->len && u->data[i + 1] >= 0xDC00 && u->data[i + 1] < 0xE000)
            strbuf_push_cp(out, 0x10000 + ((c - 0xD800) << 10) + (u->data[++i] - 0xDC00));
        else if (c >= 0xD800 && c < 0xE000)
            strbuf_push(out, '?');
        else
            strbuf_push_cp(out, c);
    }
}

// Writes st->units as PTBTokenizer prints a token: lowercased, after a space unless it starts a
// line. A '\n' inside a token (an SGML attribute may span lines) still ends pycocoevalcap's line.
static void token_write(ptb_state *st) {
    strbuf_clear(&st->utf8);
    strbuf_clear(&st->lower);
    units_to_utf8(&st->units, &st->utf8);
    PETAL_CHECK(text_lower(st->utf8.data, st->utf8.len, &st->lower) == PETAL_OK,
                "PTB tokenizer: a token is not valid UTF-8");
    if (!st->begin_line) strbuf_push(&st->line, ' ');
    st->begin_line = false;
    for (size_t i = 0; i < st->lower.len; i++) {
        if (st->lower.data[i] == '\n')
            line_end(st);
        else
            strbuf_push(&st->line, st->lower.data[i]);
    }
}

static void token_emit(ptb_state *st, const uint16_t *t, int64_t n, unsigned tf) {
    st->units.len = 0;
    for (int64_t i = 0, used; i < n; i += used) {
        const uint16_t *rep = transform_unit(tf, t + i, n - i, &used);
        if (rep)
            u16_push_str(&st->units, rep);
        else
            u16_push(&st->units, t[i]);
    }
    if ((tf & TF_SOFT_HYPHENS) && st->units.len == 0) u16_push(&st->units, '-');
    token_write(st);
}

static void token_emit_text(ptb_state *st, const uint16_t *text) {
    st->units.len = 0;
    u16_push_str(&st->units, text);
    token_write(st);
}

// Runs rule k's action on s[pos, end); returns where scanning goes on.
static int64_t ptb_act(ptb_state *st, int k, const uint16_t *s, int64_t pos, int64_t end) {
    const ptb_rule *r = &ptb_rules[k];
    int64_t n = end - pos;
    switch (r->kind) {
    case LEX_EMIT:
        token_emit(st, s + pos, n, r->transforms);
        return end;
    case LEX_SKIP:
        return end;
    case LEX_NEWLINE:
        if (s[end - 1] == '\n') {
            line_end(st);
            st->begin_line = true;
        }
        return end;
    case LEX_REPLACE:
        token_emit_text(st, r->text);
        return end;
    case LEX_PUSHBACK:
        token_emit(st, s + pos, n - r->pushback, 0);
        return end - r->pushback;
    case LEX_ACRONYM:
        token_emit(st, s + pos, n == 2 ? 1 : n, 0);
        return n == 2 ? pos + 1 : end - 1;
    case LEX_PERIOD_AGAIN:
        token_emit(st, s + pos, n, 0);
        return end - 1;
    case LEX_HYPHENS:
        if (n == 3 || n == 4)
            token_emit_text(st, u"--");
        else
            token_emit(st, s + pos, n, 0);
        return end;
    }
    return end;
}

// ---- the text pycocoevalcap writes for the Java program ----

// '\n'.join(c.replace('\n', ' ') for c in text), as UTF-16.
static petal_status stream_build(const char *const *text, int64_t n, u16buf *out) {
    for (int64_t i = 0; i < n; i++) {
        size_t len = strlen(text[i]), bad = text_utf8_prefix(text[i], len);
        if (bad < len)
            return petal_error(PETAL_ERR_ARG, "caption %lld is not valid UTF-8 (byte %zu)",
                               (long long)i, bad);
        if (i) u16_push(out, '\n');
        for (size_t j = 0; j < len;) {
            utf8proc_int32_t cp;
            j += (size_t)utf8proc_iterate((const uint8_t *)text[i] + j, (utf8proc_ssize_t)(len - j),
                                          &cp);
            if (cp == '\n') cp = ' ';
            if (cp >= 0x10000) {
                u16_push(out, (uint16_t)(0xD800 + ((cp - 0x10000) >> 10)));
                u16_push(out, (uint16_t)(0xDC00 + ((cp - 0x10000) & 0x3FF)));
            } else {
                u16_push(out, (uint16_t)cp);
            }
        }
    }
    return PETAL_OK;
}

petal_status caption_tokenize(const char *const *text, int64_t n, char **out) {
    PETAL_CHECK(n >= 0, "caption_tokenize: n = %lld", (long long)n);
    if (n == 0) return PETAL_OK;
    u16buf stream = {0};
    petal_status status = stream_build(text, n, &stream);
    if (status != PETAL_OK) {
        free(stream.data);
        return status;
    }
    ptb_state st;
    ptb_init(&st, out, n);
    const uint16_t *s = stream.data;
    int64_t len = (int64_t)stream.len;
    for (int64_t pos = 0, end = 0; pos < len;) {
        int k = ptb_match(&st, s, len, pos, &end);
        pos = ptb_act(&st, k, s, pos, end);
    }
    line_end(&st);
    PETAL_CHECK(st.n_out == n, "PTB tokenizer: %lld lines for %lld captions", (long long)st.n_out,
                (long long)n);
    ptb_free(&st);
    free(stream.data);
    return PETAL_OK;
}

void caption_tokens_free(char **tokens, int64_t n) {
    for (int64_t i = 0; i < n; i++) free(tokens[i]);
}
