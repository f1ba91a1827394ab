// ServiceNow "after" (async) business rule: tells closegate about every move to
// Resolved or Closed, so the decision is recorded and carried back as a work
// note (and a return to In Progress when the access does not match).
//
//   Table: Incident [incident]   When: async   Update: checked   Advanced: checked
//   Condition: current.state.changesTo(6) || current.state.changesTo(7)
//
// System properties: closegate.url, closegate.source (the source name), and
// closegate.hmac_key: the source's `secret`, base64-encoded, type password2.
// The body is signed with HMAC-SHA256; the base64 tag goes in X-Closegate-Signature.
(function executeRule(current, previous) {
    var body = {
        delivery_id: gs.generateGUID(),
        table: current.getTableName(),
        sys_id: current.getUniqueValue(),
        number: current.getValue('number'),
        previous_state: previous.getValue('state'),
        state: current.getValue('state'),
        category: current.getValue('category'),
        short_description: current.getValue('short_description'),
        caller_id: current.getValue('caller_id'),
        sys_updated_by: current.getValue('sys_updated_by'),
        sys_updated_on: current.getValue('sys_updated_on')
    };
    var elements = current.getElements();
    for (var i = 0; i < elements.size(); i++) {
        var name = elements.get(i).getName();
        if (name.indexOf('u_') === 0) {
            body[name] = elements.get(i).toString();
        }
    }
    var text = JSON.stringify(body);
    var mac = new GlideCertificateEncryption().generateMac(gs.getProperty('closegate.hmac_key'), 'HmacSHA256', text);
    var request = new sn_ws.RESTMessageV2();
    request.setEndpoint(gs.getProperty('closegate.url') + '/hooks/' + gs.getProperty('closegate.source', 'servicenow'));
    request.setHttpMethod('post');
    request.setRequestHeader('Content-Type', 'application/json');
    request.setRequestHeader('X-Closegate-Signature', mac);
    request.setRequestBody(text);
    request.executeAsync();
})(current, previous);
