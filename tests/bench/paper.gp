# tests/bench/paper.gp - plots of the goodput-vs-bounces experiment (tests/bench/paper.sh):
#   gnuplot -e "csv='paper.csv'; outdir='.'; configs='a b bw c d e'" tests/bench/paper.gp
# One line per configuration against the invalid share: goodput and all messages handled
# per second (the shape of the original figure), then what a message costs the front:
# CPU, disk writes, and the RCPT reply time. SVG, so the plots of record diff as text.
if (!exists("configs")) configs = "a b bw c d e"
set datafile separator ","
set terminal svg size 800,560 dynamic font "sans,12"
set key below
set grid
set xlabel "invalid recipients (%)"
set xrange [0:90]
set xtics ("0" 0, "10" 10, "25" 25, "50" 50, "75" 75, "90" 90)
set yrange [0:*]

name(c) = c eq "a" ? "(a) no verification" : \
          c eq "b" ? "(b) reject_unverified_recipient, cold" : \
          c eq "bw" ? "(b) reject_unverified_recipient, warm" : \
          c eq "c" ? "(c) callahead, cold cache" : \
          c eq "d" ? "(d) callahead, warm cache" : "(e) Sendmail + callahead-milter, cold"
# the rows of configuration c (the CSV runs share by share; a line needs its own rows)
rows(c) = "< grep '^".c.",' '".csv."'"

set output outdir."/goodput.svg"
set title "Goodput: valid messages accepted per second"
set ylabel "valid messages / s"
plot for [c in configs] rows(c) using 2:8 with linespoints lw 2 title name(c) noenhanced

set output outdir."/throughput.svg"
set title "All messages handled per second (accepted or rejected)"
set ylabel "messages / s"
plot for [c in configs] rows(c) using 2:7 with linespoints lw 2 title name(c) noenhanced

set output outdir."/cpu.svg"
set title "CPU seconds per 1,000 messages: front Postfix (incl. relaying, bounces) + policyd"
set ylabel "CPU s / 1,000 messages"
plot for [c in configs] rows(c) using 2:($25 + $26) with linespoints lw 2 \
    title name(c) noenhanced

set output outdir."/disk.svg"
set title "Bytes written to disk by the front Postfix per message"
set ylabel "bytes / message"
plot for [c in configs] rows(c) using 2:27 with linespoints lw 2 title name(c) noenhanced

set output outdir."/rcpt_p99.svg"
set title "RCPT reply time, 99th percentile"
set ylabel "ms"
set logscale y
set yrange [*:*]
plot for [c in configs] rows(c) using 2:36 with linespoints lw 2 title name(c) noenhanced
