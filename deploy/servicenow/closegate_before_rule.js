// ServiceNow "before" business rule: stops an incident from moving to Resolved or
// Closed unless closegate confirms the access in the target system.
//
//   Table: Incident [incident]   When: before   Update: checked   Advanced: checked
//   Condition: current.state.changesTo(6) || current.state.changesTo(7)
//
// System properties (sys_properties) it reads:
//   closegate.url           https://closegate.example.com
//   closegate.gate_token    the bearer token of this caller (gate.callers.<name>.token), type password2
//   closegate.source        the closegate source name of this instance (e.g. servicenow)
// The call is synchronous and bounded (10 s, below the 30 s outbound cap). Anything
// but an explicit {"allowed": true} aborts the update: no answer is no permission.
(function executeRule(current, previous) {
    var base = gs.getProperty('closegate.url');
    var fields = {};
    var elements = current.getElements();
    for (var i = 0; i < elements.size(); i++) {
        var element = elements.get(i);
        var name = element.getName();
        if (name.indexOf('u_') === 0) {
            fields[name.substring(2)] = element.toString();
        }
    }
    var body = {
        source: gs.getProperty('closegate.source', 'servicenow'),
        ticket: current.getValue('number'),
        state: current.getValue('state'),
        title: current.getValue('short_description'),
        labels: [current.getTableName(), current.getValue('category')],
        fields: fields,
        actor: { id: gs.getUserName(), kind: 'human' },
        requester: { id: current.getValue('caller_id'), kind: 'unknown' }
    };
    var allowed = false;
    var message = 'closegate could not be reached: the closure is blocked until the access can be verified.';
    try {
        var request = new sn_ws.RESTMessageV2();
        request.setEndpoint(base + '/v1/gate/check');
        request.setHttpMethod('post');
        request.setRequestHeader('Content-Type', 'application/json');
        request.setRequestHeader('Authorization', 'Bearer ' + gs.getProperty('closegate.gate_token'));
        request.setHttpTimeout(10000);
        request.setRequestBody(JSON.stringify(body));
        var response = request.execute();
        if (response.getStatusCode() == 200) {
            var answer = JSON.parse(response.getBody());
            allowed = answer.allowed === true;
            if (!allowed) {
                message = 'closegate: ' + (answer.reasons || []).join('; ') +
                    (answer.evidence_id ? ' (evidence ' + answer.evidence_id + ')' : '');
            }
        } else {
            message = 'closegate refused the check (HTTP ' + response.getStatusCode() + '): the closure is blocked.';
        }
    } catch (e) {
        gs.error('closegate check failed: ' + e);
    }
    if (!allowed) {
        gs.addErrorMessage(message);
        current.setAbortAction(true);
    }
})(current, previous);
