#!/usr/bin/perl
# A paging terminal for the tests: Debian's Net::SNPP::Server (libnet-snpp-perl) on
# 127.0.0.1, logging every accepted page to a file before it answers 250 to SEND.
#
#   snpp_server.pl --log FILE [--port N] [--fail-sends N] [--verbose]
#
# Prints "listening on 127.0.0.1:PORT" on stdout once it accepts connections (port 0,
# the default, picks a free one). --fail-sends N answers the first N SENDs with 554,
# as a terminal that cannot reach its transmitter would.
use strict;
use warnings;
use Getopt::Long;
use Socket qw(sockaddr_in);
use Net::SNPP::Server;

my ($port, $log, $fail_sends, $verbose) = (0, undef, 0, 0);
GetOptions('port=i' => \$port, 'log=s' => \$log, 'fail-sends=i' => \$fail_sends,
           'verbose' => \$verbose) or die "bad options\n";
die "--log FILE is required\n" unless defined $log;

my $server = Net::SNPP::Server->new(Port => $port, BindTo => '127.0.0.1', Timeout => 10);
my ($bound) = sockaddr_in(getsockname($server->socket()));

$server->callback('write_log', sub { print STDERR "snpp_server: @_\n" if $verbose; });
$server->callback('process_page', sub {
    my ($pager, $page, $results) = @_;
    if ($fail_sends > 0) {
        $fail_sends--;
        print STDERR "snpp_server: failing a SEND on purpose\n" if $verbose;
        return 0;    # the server answers 554
    }
    open(my $fh, '>>', $log) or die "cannot append to $log: $!\n";
    print $fh "$pager->[0]\t$page->{mess}\n";
    close($fh) or die "cannot write $log: $!\n";
    push(@$results, [$pager, $page]);
    return 1;
});

$| = 1;
print "listening on 127.0.0.1:$bound\n";

# One client at a time is all a test needs.
while (1) {
    my $client = $server->client();
    next unless $client;
    $server->handle_client($client);
    close($client);
}
