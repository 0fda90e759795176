# churn.pl: allocation-heavy Perl work whose output is deterministic.
# tests/test_programs.c runs it with and without LD_PRELOAD=libptm.so and
# compares the output byte for byte.
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);

my $seed = 12345;
sub rnd { $seed = ($seed * 1103515245 + 12345) % 2147483648; return $seed % $_[0]; }

# Hashes: grow, delete, rebuild, nested.
my %h;
for my $i (1 .. 60000) {
    my $k = "k" . rnd(80000);
    $h{$k} .= sprintf("%d,", $i);
    delete $h{"k" . rnd(80000)} if $i % 4 == 0;
}
my $hd = md5_hex(join(";", map { "$_=$h{$_}" } sort keys %h));
printf "hash %d %s\n", scalar(keys %h), $hd;

my %nested;
for my $i (1 .. 40000) {
    push @{ $nested{ $i % 97 }{ $i % 13 } }, [ $i, "x" x ($i % 30) ];
}
my $cells = 0;
for my $x (sort { $a <=> $b } keys %nested) {
    for my $y (sort { $a <=> $b } keys %{ $nested{$x} }) {
        $cells += scalar @{ $nested{$x}{$y} };
    }
}
printf "nested %d %d\n", scalar(keys %nested), $cells;

# Regular expressions over a big generated text.
my $text = join("\n", map { sprintf("line %06d: user%d\@host%d.example value=%x tag=%s", $_, rnd(1000), rnd(50), rnd(1 << 30), chr(97 + rnd(26)) x (1 + rnd(8))) } 1 .. 12000);
my %byhost;
while ($text =~ /user(\d+)\@host(\d+)\.example value=([0-9a-f]+)/g) {
    $byhost{$2} += hex($3) % 1000;
}
(my $t2 = $text) =~ s/value=([0-9a-f]+)/"V=" . uc($1)/ge;
my @tags = ($t2 =~ /tag=([a-z]+)/g);
my @split = split /\n/, $t2;
printf "regex %d %d %d %s %s\n", scalar(keys %byhost), scalar(@tags), scalar(@split),
    md5_hex(join(",", map { "$_:$byhost{$_}" } sort { $a <=> $b } keys %byhost)), md5_hex($t2);

# Sorting: numeric, string, multi-key, Schwartzian transform.
my @recs = map { [ rnd(1000), sprintf("s%07d", rnd(10_000_000)), rnd(100) ] } 1 .. 50000;
my @s1 = sort { $a->[0] <=> $b->[0] or $a->[1] cmp $b->[1] } @recs;
my @s2 = map { $_->[1] } sort { $a->[0] cmp $b->[0] } map { [ $_->[1] . $_->[2], $_ ] } @recs;
my @s3 = sort { $b <=> $a } map { $_->[2] * 1000 + $_->[0] } @recs;
printf "sort %s %s %s\n", md5_hex(join(",", map { "@$_" } @s1[0 .. 999])),
    md5_hex(join(",", map { $_->[1] } @s2[0 .. 999])), md5_hex(join(",", @s3));

# sprintf and string building.
my $buf = "";
for my $i (1 .. 40000) {
    $buf .= sprintf("%08.3f|%-10s|%+d|%e\n", $i / 7, "n$i", -$i, $i * 1.5);
}
my @lines = split /\n/, $buf;
my $joined = join("", reverse @lines);
printf "sprintf %d %d %s\n", length($buf), scalar(@lines), md5_hex($joined);

# Churn: arrays of strings growing and shrinking.
my @pool;
for my $i (1 .. 80000) {
    push @pool, "p" x (1 + rnd(300));
    splice(@pool, rnd(scalar @pool), 1) if @pool > 2000;
}
my $total = 0;
$total += length for @pool;
printf "pool %d %d\n", scalar(@pool), $total;
print "done\n";
