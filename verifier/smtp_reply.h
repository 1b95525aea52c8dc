/*
 * smtp_reply.h - incremental parser for SMTP server replies (RFC 5321 4.2).
 *
 * A callout reads replies from a next hop it does not control: bytes arrive
 * split anywhere, a reply may span many lines, and a hostile or broken
 * server may send anything. The parser takes bytes as they come and returns
 * one complete reply at a time, or a parse error for anything that is not a
 * well-formed reply within fixed limits. It never reads past the end of the
 * bytes it is given and never trusts a terminator.
 */
#ifndef CALLAHEAD_SMTP_REPLY_H
#define CALLAHEAD_SMTP_REPLY_H

#include <stddef.h>

#define SMTP_REPLY_LINE_MAX 2048   /* bytes per line, CRLF excluded (RFC 5321 says 512) */
#define SMTP_REPLY_LINES_MAX 100   /* lines per reply (an EHLO reply has a dozen) */
#define SMTP_REPLY_BYTES_MAX 65536 /* bytes per reply, all lines and CRLFs */
#define SMTP_REPLY_TEXT_MAX 1024   /* joined text kept; longer text is truncated, not an error */
#define SMTP_REPLY_ENH_MAX 16      /* "5.1.1", at most "x.yyy.zzz" */

#define SMTP_EHLO_SMTPUTF8 (1u << 0)   /* RFC 6531 */
#define SMTP_EHLO_STARTTLS (1u << 1)   /* RFC 3207 */
#define SMTP_EHLO_PIPELINING (1u << 2) /* RFC 2920 */

/* smtp_reply - one complete reply */
struct smtp_reply {
    int code;                          /* 200..599 */
    int nlines;                        /* lines in the reply, >= 1 */
    char enhanced[SMTP_REPLY_ENH_MAX]; /* RFC 3463 status of the first line, or "" */
    /*
     * 1 when the lines disagree about the status: a later line carries a
     * status other than the first line's, or one where the first had none.
     * Such a reply is not a clear answer (smtp_status.h).
     */
    int enhanced_mixed;
    /*
     * SMTP_EHLO_* flags: the extension keywords a 250 reply lists, one per
     * line after the first (as in a reply to EHLO). Meaningful only for the
     * EHLO reply; 0 for a single-line reply.
     */
    unsigned ehlo;
    /*
     * The text of all lines joined by single spaces, sanitised with
     * verdict_sanitize (printable ASCII, no CR/LF). The first line keeps its
     * enhanced status ("5.1.1 User unknown"); later lines that repeat the
     * same enhanced status have it removed so it is not repeated.
     */
    char text[SMTP_REPLY_TEXT_MAX];
};

enum smtp_reply_status {
    SMTP_REPLY_ERROR = -1,    /* malformed or over a limit; the parser stays in error */
    SMTP_REPLY_NEED_MORE = 0, /* all bytes consumed, no complete reply yet */
    SMTP_REPLY_DONE = 1,      /* *out holds a reply; bytes after *consumed are not read yet */
};

struct smtp_reply_parser; /* opaque */

/* smtp_reply_parser_new - a parser at the start of a reply; NULL on out of memory */
struct smtp_reply_parser *smtp_reply_parser_new(void);

/* smtp_reply_parser_free - NULL is fine */
void smtp_reply_parser_free(struct smtp_reply_parser *p);

/* smtp_reply_parser_reset - forget any partial reply and a previous error */
void smtp_reply_parser_reset(struct smtp_reply_parser *p);

/*
 * smtp_reply_parse - feed len bytes at buf (any bytes, not NUL-terminated).
 * Sets *consumed to the number of bytes used. On SMTP_REPLY_DONE, *out is
 * filled and the parser is ready for the next reply: feed it the rest
 * (buf + *consumed) later. On SMTP_REPLY_ERROR, err (errlen bytes) says why,
 * and every later call fails until smtp_reply_parser_reset.
 */
enum smtp_reply_status smtp_reply_parse(struct smtp_reply_parser *p, const char *buf, size_t len,
                                        size_t *consumed, struct smtp_reply *out, char *err,
                                        size_t errlen);

#endif
