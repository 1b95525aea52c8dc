#!/usr/bin/perl
# tests/e2e/milter_load.pl - N parallel SMTP sessions against HOST:PORT, each
# sending K recipients user<i>x<j>@example.test after one MAIL FROM, then QUIT.
# Recipient (i, j) is expected to be valid when (i + j) is even. Every RCPT
# reply is checked against that expectation and against the address it names
# (Sendmail writes "<address>... ", Postfix "<address>: " in a rejection), so a
# lost or crossed answer shows as a mismatch.
# Prints "valid=V invalid=I other=O mismatch=M" and one line per mismatch.
# With ROUNDS, each of the SESSIONS workers runs ROUNDS sessions one after the
# other (for sessions/s at a given concurrency; the benchmark uses it).
# usage: milter_load.pl HOST PORT SESSIONS RCPTS_PER_SESSION [ROUNDS]
use strict;
use warnings;
use IO::Socket::INET;

my ($host, $port, $n, $k, $rounds) = @ARGV;
$rounds ||= 1;
die "usage: $0 HOST PORT SESSIONS RCPTS\n" unless $k;

# reply - one (possibly multi-line) SMTP reply, or "" on EOF/timeout
sub reply {
    my ($s) = @_;
    my $all = "";
    while (defined(my $l = <$s>)) {
        $l =~ s/\r?\n$//;
        $all .= "$l\n";
        return $l if $l =~ /^\d{3} /;
    }
    return "";
}

pipe(my $rd, my $wr) or die "pipe: $!";
my @kids;
for my $i (1 .. $n) {
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        close $rd;
        my @out;
        for my $round (1 .. $rounds) {
        my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Timeout => 60);
        if (!$s) {
            push @out, "other $i connect: $!";
        } else {
            $s->autoflush(1);
            local $SIG{ALRM} = sub { die "timeout\n" };
            alarm 120;
            eval {
                reply($s);
                print $s "EHLO load$i.e2e.test\r\n"; reply($s);
                print $s "MAIL FROM:<load$i\@client.e2e.test>\r\n"; reply($s);
                for my $j (1 .. $k) {
                    my $a = "user${i}x$j\@example.test";
                    print $s "RCPT TO:<$a>\r\n";
                    my $r = reply($s);
                    my $want = (($i + $j) % 2 == 0) ? "valid" : "invalid";
                    my $got = $r =~ /^250 / ? "valid" : $r =~ /^550 5\.1\.1 / ? "invalid" : "other";
                    my $named = $r !~ /^550/ || index($r, "<$a>") >= 0;
                    push @out, ($got eq $want && $named ? $got : "mismatch")
                        . " $a want=$want reply=[$r]";
                }
                print $s "QUIT\r\n"; reply($s);
            };
            push @out, "other $i: $@" if $@;
            alarm 0;
        }
        }
        print $wr join("", map { "$_\n" } @out);
        close $wr;
        exit 0;
    }
    push @kids, $pid;
}
close $wr;
my %count = (valid => 0, invalid => 0, other => 0, mismatch => 0);
my @bad;
while (my $l = <$rd>) {
    my ($what) = $l =~ /^(\S+)/;
    $count{$what}++;
    push @bad, $l if $what eq "mismatch" || $what eq "other";
}
waitpid($_, 0) for @kids;
printf "valid=%d invalid=%d other=%d mismatch=%d\n", @count{qw(valid invalid other mismatch)};
print @bad[0 .. ($#bad < 20 ? $#bad : 19)];
