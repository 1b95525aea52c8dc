#!/usr/bin/perl
# prom_strict.pl - a strict checker of the Prometheus text exposition format
# (version 0.0.4), for tests where promtool is not installed, and stricter than
# promtool about what this project promises:
#   - every line is "# HELP name text", "# TYPE name type" or a sample
#     "name{label="value",...} value"; no other comments, no blank lines, the
#     body ends with a newline;
#   - names and label names are valid; label values escape only \\ \" \n;
#     values are Go floats (or +Inf, -Inf, NaN);
#   - each family has at most one HELP and exactly one TYPE, both before its
#     samples, and its samples are contiguous; no series appears twice;
#   - counters end in _total; a summary has only _sum, _count and quantile series;
#     a histogram has _bucket series with an le label,
#     cumulative counts that never decrease, an le="+Inf" bucket equal to its
#     _count, and a _sum, per label set.
# Reads the body on stdin; prints "name{labels} value" lines (one per sample,
# labels sorted) on stdout for the test to look values up; exits 1 with the
# line number and reason on the first violation.
use strict;
use warnings;

my $NAME = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
my $LNAME = qr/[a-zA-Z_][a-zA-Z0-9_]*/;
my $FLOAT = qr/(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN)/;

my (%help, %type, %done, %seen, %hist);
my $current = '';
my $n = 0;

sub fail { print STDERR "prom_strict: line $n: $_[0]\n"; exit 1 }

sub family {
    my ($name) = @_;
    for my $suffix (qw(_bucket _sum _count)) {
        if ($name =~ /^(.*)\Q$suffix\E$/ && ($type{$1} // '') eq 'histogram') {
            return ($1, $suffix);
        }
        if ($suffix ne '_bucket' && $name =~ /^(.*)\Q$suffix\E$/ && ($type{$1} // '') eq 'summary') {
            return ($1, $suffix);
        }
    }
    return ($name, '');
}

my $body = do { local $/; <STDIN> };
fail("empty body") if !defined $body || $body eq '';
fail("body does not end with a newline") if substr($body, -1) ne "\n";
chop $body;
for my $line (split /\n/, $body, -1) {
    $n++;
    fail("blank line") if $line eq '';
    if ($line =~ /^#/) {
        if ($line =~ /^# HELP ($NAME) (.*)$/) {
            fail("second HELP for $1") if $help{$1}++;
            fail("HELP for $1 after its samples") if $done{$1} || $current eq $1;
            fail("bad escape in HELP") if $2 =~ /\\(?![\\n])/;
        } elsif ($line =~ /^# TYPE ($NAME) (counter|gauge|histogram|summary|untyped)$/) {
            fail("second TYPE for $1") if exists $type{$1};
            fail("TYPE for $1 after its samples") if $done{$1} || $current eq $1;
            $type{$1} = $2;
            fail("counter $1 does not end in _total") if $2 eq 'counter' && $1 !~ /_total$/;
        } else {
            fail("not a HELP or TYPE line: $line");
        }
        next;
    }
    $line =~ /^($NAME)(?:\{(.*)\})? ($FLOAT)(?: (-?\d+))?$/ or fail("not a sample: $line");
    my ($name, $lab, $value) = ($1, $2 // '', $3);
    my ($fam, $suffix) = family($name);
    fail("sample of $fam before its TYPE") unless exists $type{$fam};
    if ($fam ne $current) {
        fail("samples of $fam are not contiguous") if $done{$fam};
        $done{$current} = 1 if $current ne '';
        $current = $fam;
    }
    my %l;
    my $rest = $lab;
    while ($rest ne '') {
        $rest =~ s/^($LNAME)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)// or fail("bad labels: {$lab}");
        fail("label $1 twice") if exists $l{$1};
        $l{$1} = $2;
    }
    fail("a counter's value is negative") if $type{$fam} eq 'counter' && $value =~ /^-/;
    my $id = $name . (%l ? '{' . join(',', map {"$_=\"$l{$_}\""} sort keys %l) . '}' : '');
    fail("series $id twice") if $seen{$id}++;
    if ($type{$fam} eq 'summary' && $suffix eq '') {
        fail("summary sample $name without a quantile label") unless exists $l{quantile};
    }
    if ($type{$fam} eq 'histogram') {
        fail("histogram sample $name without _bucket, _sum or _count") if $suffix eq '';
        my $le = delete $l{le};
        my $key = $fam . '{' . join(',', map {"$_=\"$l{$_}\""} sort keys %l) . '}';
        my $h = $hist{$key} //= {last => -1};
        if ($suffix eq '_bucket') {
            fail("bucket without le") unless defined $le;
            fail("le=\"$le\" is not a float") unless $le =~ /^$FLOAT$/;
            my $bound = $le eq '+Inf' ? 9**9**9 : $le;
            fail("le=\"$le\" not above the previous bucket") if defined $h->{le} && $bound <= $h->{le};
            fail("bucket count $value below the previous bucket") if $value < $h->{last};
            $h->{le} = $bound;
            $h->{last} = $value;
            $h->{inf} = $value if $le eq '+Inf';
        } else {
            fail("le label on $name") if defined $le;
            $h->{$suffix} = $value;
        }
    }
    print "$id $value\n";
}
for my $key (sort keys %hist) {
    my $h = $hist{$key};
    fail("histogram $key has no +Inf bucket") unless defined $h->{inf};
    fail("histogram $key has no _count") unless defined $h->{_count};
    fail("histogram $key has no _sum") unless defined $h->{_sum};
    fail("histogram $key: +Inf bucket $h->{inf} is not _count $h->{_count}")
        if $h->{inf} != $h->{_count};
}
for my $fam (sort keys %type) {
    fail("TYPE $fam without samples") unless $done{$fam} || $current eq $fam;
}
exit 0;
