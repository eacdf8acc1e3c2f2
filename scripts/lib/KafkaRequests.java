// Prints the broker's request counters, one "<request> <count>" line each (Produce, Fetch,
// OffsetCommit, EndTxn, ...), read from its JMX MBeans
// kafka.network:type=RequestMetrics,name=RequestsPerSec,request=*,version=*. Attaches to the
// broker's JVM by pid through the local attach API, so the broker opens no JMX port.
// Run by `scripts/stack kafka-requests` with Java's single-file source launcher:
//   java scripts/lib/KafkaRequests.java <broker pid>
import com.sun.tools.attach.VirtualMachine;
import java.lang.management.ManagementFactory;
import java.util.Map;
import java.util.TreeMap;
import javax.management.MBeanServerConnection;
import javax.management.ObjectName;
import javax.management.remote.JMXConnector;
import javax.management.remote.JMXConnectorFactory;
import javax.management.remote.JMXServiceURL;

public class KafkaRequests {
    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: java KafkaRequests.java <broker pid>");
            System.exit(2);
        }
        VirtualMachine vm = VirtualMachine.attach(args[0]);
        String address;
        try {
            address = vm.startLocalManagementAgent();
        } finally {
            vm.detach();
        }
        try (JMXConnector connector = JMXConnectorFactory.connect(new JMXServiceURL(address))) {
            MBeanServerConnection server = connector.getMBeanServerConnection();
            ObjectName pattern =
                new ObjectName("kafka.network:type=RequestMetrics,name=RequestsPerSec,*");
            Map<String, Long> counts = new TreeMap<>();
            for (ObjectName name : server.queryNames(pattern, null)) {
                long count = ((Number) server.getAttribute(name, "Count")).longValue();
                counts.merge(name.getKeyProperty("request"), count, Long::sum);
            }
            counts.forEach((request, count) -> System.out.println(request + " " + count));
        }
    }
}
